"""Turn raw string tables into a validated Dataset or ItemCatalog, naming file, line and field of any fault.

Policy: malformed values (a non-numeric rating, an unparsable timestamp, a missing id) are always errors.
Recoverable faults (ratings outside the declared range, interactions for items missing from the catalog,
repeated user-item pairs) are dropped with a logged count, or raised in ``strict`` mode. Nothing disappears
without a count.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
import pandas as pd
import pydantic

from recllm.data.catalog import Item, ItemCatalog
from recllm.data.dataset import Dataset
from recllm.data.tables import Table
from recllm.data.vocabulary import Vocabulary
from recllm.errors import ConfigError, DataError

log = logging.getLogger(__name__)


class InteractionColumns(pydantic.BaseModel):
    """Which source column holds each interaction field (rating and timestamp are optional)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    user: str = "user"
    item: str = "item"
    rating: str | None = "rating"
    timestamp: str | None = "timestamp"

    @pydantic.field_validator("rating", "timestamp", mode="before")
    @classmethod
    def _empty_means_absent(cls, value: object) -> object:
        """TOML has no null: ``rating = ""`` says the data has no rating column."""
        return None if value == "" else value


class ItemColumns(pydantic.BaseModel):
    """Which source column holds each item field; ``text`` lists further columns kept as facts."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    item: str = "item"
    title: str = "title"
    year: str | None = None
    genres: str | None = None
    genre_separator: str = "|"
    text: tuple[str, ...] = ()
    year_missing: tuple[str, ...] = ()  # source tokens that mean "year unknown"


@dataclass
class LoadReport:
    """Counts of what validation dropped, so callers and logs can say what happened."""

    rows_read: int = 0
    out_of_range: int = 0
    unknown_items: int = 0
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)


DuplicatePolicy = Literal["error", "keep-last", "keep-first", "keep-all"]


def check_range_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    """``bounds`` if both are finite and low < high; a ValueError saying which rule failed otherwise."""
    low, high = bounds
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("both ends must be finite numbers")
    if not low < high:
        raise ValueError("the low end must be below the high end")
    return (float(low), float(high))


# an inclusive [low, high] of allowed ratings, as written in a config: two numbers (not strings or booleans)
RatingRange = Annotated[tuple[pydantic.StrictFloat, pydantic.StrictFloat], pydantic.AfterValidator(check_range_bounds)]


def _require_columns(table: Table, wanted: Mapping[str, str | None]) -> None:
    present = list(table.frame.columns)
    for role, column in wanted.items():
        if column is not None and column not in present:
            raise DataError(f"missing column '{column}' (the {role} column); columns present: "
                            f"{', '.join(map(str, present)) or 'none'}", path=table.path, field=column)


def _require_values(table: Table, column: str) -> pd.Series:
    values = table.frame[column]
    missing = values.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataError(f"empty value ({int(missing.sum())} rows lack it)", path=table.path,
                        line=table.line_of(row), field=column)
    return values.astype(str).str.strip()


def parse_numbers(table: Table, column: str, *, dtype: type = np.float64, allow_missing: bool = False) -> np.ndarray:
    """Column as numbers; the first non-numeric value is reported with its line."""
    raw = table.frame[column]
    numbers = pd.to_numeric(raw, errors="coerce")
    bad = (numbers.isna() & raw.notna()).to_numpy()
    if not allow_missing:
        bad = bad | raw.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = raw.iloc[row]
        shown = "an empty value" if value is None else f"'{value}'"
        raise DataError(f"expected a number, found {shown}", path=table.path, line=table.line_of(row),
                        field=column)
    numbers = numbers.to_numpy(dtype=np.float64)
    if not np.isfinite(numbers[~np.isnan(numbers)]).all():
        row = int(np.flatnonzero(~np.isfinite(numbers) & ~np.isnan(numbers))[0])
        raise DataError("value is not finite", path=table.path, line=table.line_of(row), field=column)
    return numbers if dtype is np.float64 else numbers.astype(dtype)


def check_rating_range(table: Table, column: str, ratings: np.ndarray, rating_range: tuple[float, float], *,
                       strict: bool, report: LoadReport) -> np.ndarray:
    """Which rows have a rating inside the inclusive ``rating_range``: the one range check of every loader.

    The first rating outside is an error naming file, line and field when ``strict``; otherwise those rows
    are to be dropped, and their count is logged and kept in ``report``.
    """
    try:
        low, high = check_range_bounds(rating_range)
    except ValueError as exc:
        raise ConfigError(f"rating_range: {exc} (got {list(rating_range)})") from None
    inside = (ratings >= low) & (ratings <= high)
    if inside.all():
        return inside
    row = int(np.flatnonzero(~inside)[0])
    count = int((~inside).sum())
    if strict:
        raise DataError(f"rating {ratings[row]:g} outside the allowed range [{low:g}, {high:g}] "
                        f"({count} such rows)", path=table.path, line=table.line_of(row), field=column)
    log.warning("%s: dropped %d interactions with a rating outside the allowed range [%g, %g] "
                "(first at line %d, field '%s')", table.path, count, low, high, table.line_of(row), column)
    report.out_of_range = count
    report.notes.append(f"dropped {count} interactions with a rating outside [{low:g}, {high:g}]")
    return inside


def parse_timestamps(table: Table, column: str) -> np.ndarray:
    """Seconds since the epoch, from numbers or ISO-8601 date-times."""
    raw = table.frame[column]
    numbers = pd.to_numeric(raw, errors="coerce")
    if numbers.notna().all():
        values = numbers.to_numpy(dtype=np.float64)
        fractional = values != np.floor(values)
        if fractional.any():
            log.warning("%s: %d timestamps in '%s' have fractions of a second, truncated to whole seconds "
                        "(first at line %d); equal seconds keep file order", table.path, int(fractional.sum()),
                        column, table.line_of(int(np.flatnonzero(fractional)[0])))
        return np.floor(values).astype(np.int64)
    parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
    bad = parsed.isna().to_numpy() & numbers.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = raw.iloc[row]
        shown = "an empty value" if value is None else f"'{value}'"
        raise DataError(f"expected a timestamp (epoch seconds or ISO-8601), found {shown}",
                        path=table.path, line=table.line_of(row), field=column)
    seconds = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return np.where(numbers.notna(), numbers.fillna(0), seconds.fillna(0)).astype(np.int64)


def build_dataset(
    table: Table,
    columns: InteractionColumns | None = None,
    *,
    catalog: ItemCatalog | None = None,
    strict: bool = False,
    duplicates: DuplicatePolicy = "keep-last",
    rating_range: tuple[float, float] | None = None,
    user_attributes: pd.DataFrame | None = None,
    name: str = "dataset",
    report: LoadReport | None = None,
) -> Dataset:
    """Validate an interaction table and build a Dataset.

    With a ``rating_range`` (inclusive), ratings outside it are dropped with a logged count (an error when
    ``strict``); so are, with a ``catalog``, interactions for items it lacks. Repeated (user, item) pairs
    follow ``duplicates`` among the rows still kept; ``strict`` makes them errors too.
    """
    columns = columns or InteractionColumns()
    report = report if report is not None else LoadReport()
    frame = table.frame
    _require_columns(table, {"user": columns.user, "item": columns.item, "rating": columns.rating,
                             "timestamp": columns.timestamp})
    report.rows_read = len(frame)
    if len(frame) == 0:
        raise DataError("no interactions in the file", path=table.path)
    users = _require_values(table, columns.user)
    items = _require_values(table, columns.item)
    ratings = parse_numbers(table, columns.rating) if columns.rating else None
    timestamps = parse_timestamps(table, columns.timestamp) if columns.timestamp else None

    keep = np.ones(len(frame), dtype=bool)
    if ratings is not None and columns.rating is not None and rating_range is not None:
        keep &= check_rating_range(table, columns.rating, ratings, rating_range, strict=strict, report=report)
    if catalog is not None:
        # counted among the rows still kept, so that each dropped row is counted once
        unknown = ~items.isin(pd.Index(catalog.ids)).to_numpy() & keep
        if unknown.any():
            row = int(np.flatnonzero(unknown)[0])
            count = int(unknown.sum())
            if strict:
                raise DataError(f"item '{items.iloc[row]}' is not in the item catalog ({count} such rows)",
                                path=table.path, line=table.line_of(row), field=columns.item)
            log.warning("%s: dropped %d interactions with items missing from the catalog (first at line %d)",
                        table.path, count, table.line_of(row))
            report.unknown_items = count
            report.notes.append(f"dropped {count} interactions for unknown items")
            keep &= ~unknown

    policy: DuplicatePolicy = "error" if strict else duplicates
    if policy != "keep-all":
        # among the rows still kept (labels stay source row numbers): a dropped row repeats nothing
        pairs = pd.DataFrame({"u": users.to_numpy(), "i": items.to_numpy()})[keep]
        repeated = np.zeros(len(frame), dtype=bool)
        marked = pairs.duplicated(keep="last" if policy == "keep-last" else "first")
        repeated[pairs.index[marked.to_numpy()]] = True
        if repeated.any():
            row = int(np.flatnonzero(repeated)[0])
            count = int(repeated.sum())
            if policy == "error":
                same = pairs[(pairs["u"] == users.iloc[row]) & (pairs["i"] == items.iloc[row])]
                rows = same.index.to_numpy()
                raise DataError(f"user '{users.iloc[row]}' and item '{items.iloc[row]}' appear more than once "
                                f"(lines {', '.join(str(table.line_of(r)) for r in rows[:5])}); "
                                f"{count} repeated pairs in all", path=table.path,
                                line=table.line_of(rows[1]))
            log.warning("%s: dropped %d repeated user-item pairs, keeping the %s", table.path, count,
                        policy.removeprefix("keep-"))
            report.duplicates = count
            report.notes.append(f"dropped {count} repeated user-item pairs ({policy})")
            keep &= ~repeated

    if not keep.any():
        raise DataError("no interactions left after validation", path=table.path)
    item_vocab = None
    if catalog is not None:
        present = set(items[keep])
        item_vocab = Vocabulary([i for i in catalog.ids if i in present], kind="item")
    return Dataset.from_ids(
        users[keep].to_numpy(), items[keep].to_numpy(),
        ratings=None if ratings is None else ratings[keep],
        timestamps=None if timestamps is None else timestamps[keep],
        item_vocab=item_vocab, user_attributes=user_attributes, name=name,
    )


def build_catalog(table: Table, columns: ItemColumns | None = None) -> ItemCatalog:
    """Validate an item table (unique ids, non-empty titles, integer years) and build an ItemCatalog."""
    columns = columns or ItemColumns()
    _require_columns(table, {"item": columns.item, "title": columns.title, "year": columns.year,
                             "genres": columns.genres, **{f"text ({c})": c for c in columns.text}})
    if len(table.frame) == 0:
        raise DataError("no items in the file", path=table.path)
    ids = _require_values(table, columns.item)
    titles = _require_values(table, columns.title)
    repeated = ids.duplicated().to_numpy()
    if repeated.any():
        row = int(np.flatnonzero(repeated)[0])
        first = int(np.flatnonzero((ids == ids.iloc[row]).to_numpy())[0])
        raise DataError(f"item id '{ids.iloc[row]}' appears twice (first at line {table.line_of(first)})",
                        path=table.path, line=table.line_of(row), field=columns.item)
    years = None
    if columns.year:
        if columns.year_missing:
            table.frame[columns.year] = table.frame[columns.year].where(
                ~table.frame[columns.year].isin(columns.year_missing), None)
        years = parse_numbers(table, columns.year, allow_missing=True)
    if years is not None:
        fractional = ~np.isnan(years) & (years != np.round(years))
        if fractional.any():
            row = int(np.flatnonzero(fractional)[0])
            raise DataError(f"year must be a whole number, found {years[row]:g}", path=table.path,
                            line=table.line_of(row), field=columns.year)
    genres = table.frame[columns.genres] if columns.genres else None
    text = {c: table.frame[c] for c in columns.text}
    items = []
    for row, (item_id, title) in enumerate(zip(ids, titles, strict=True)):
        year = None if years is None or np.isnan(years[row]) else int(years[row])
        item_genres: tuple[str, ...] = ()
        if genres is not None and genres.iloc[row]:
            item_genres = tuple(g.strip() for g in str(genres.iloc[row]).split(columns.genre_separator)
                                if g.strip())
        extra = {c: str(v.iloc[row]) for c, v in text.items() if v.iloc[row] is not None}
        items.append(Item(id=item_id, title=title, year=year, genres=item_genres, extra=extra))
    return ItemCatalog(items)
