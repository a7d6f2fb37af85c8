"""Generic interactions + items from CSV/TSV, Parquet or JSON Lines, described by a TOML or dict config."""

from __future__ import annotations

from pathlib import Path
from typing import Self

import pandas as pd
import pydantic

from recllm.config import build, load_toml
from recllm.data.bundle import DataBundle
from recllm.data.catalog import Item, ItemCatalog
from recllm.data.tables import read_table
from recllm.data.validation import (
    DuplicatePolicy,
    InteractionColumns,
    ItemColumns,
    RatingRange,
    build_catalog,
    build_dataset,
)
from recllm.errors import DataError


class InteractionSource(InteractionColumns):
    path: Path
    format: str | None = None
    separator: str | None = None


class ItemSource(ItemColumns):
    path: Path
    format: str | None = None
    separator: str | None = None


class UserSource(pydantic.BaseModel):
    """A file of user attributes (one row per user): ``user`` names the id column; ``attributes`` the columns
    kept (empty: every other column); ``numeric`` those read as numbers (an audit bins them in quartiles)."""

    model_config = pydantic.ConfigDict(extra="forbid")
    path: Path
    user: str = "user"
    attributes: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    format: str | None = None
    separator: str | None = None


class FileDatasetConfig(pydantic.BaseModel):
    """Where the files are and which columns mean what; relative paths are relative to the config file.

    The validation policy sits at the top level: ``strict``, ``duplicates`` and ``rating_range``, the
    inclusive ``[low, high]`` of allowed ratings (two finite numbers, low < high; none by default). Ratings
    outside it are dropped with a logged count, or are an error when ``strict``.
    """

    model_config = pydantic.ConfigDict(extra="forbid")
    name: str = "files"
    interactions: InteractionSource
    items: ItemSource | None = None
    users: UserSource | None = None
    strict: bool = False
    duplicates: DuplicatePolicy = "keep-last"
    rating_range: RatingRange | None = None

    @pydantic.model_validator(mode="after")
    def _range_needs_ratings(self) -> Self:
        """A range on data without a rating column could never be enforced: say so instead of ignoring it."""
        if self.rating_range is not None and self.interactions.rating is None:
            raise ValueError("rating_range is set but the interactions have no rating column (rating = \"\")")
        return self


def load_files(config: FileDatasetConfig | dict, *, base: Path | None = None) -> DataBundle:
    """Load interactions (and optionally items) named by ``config``.

    Without an items file the catalog holds one entry per interacted item, titled by its id.
    """
    if isinstance(config, dict):
        config = build(FileDatasetConfig, config, where="dataset config")
    base = base or Path.cwd()
    catalog = None
    if config.items is not None:
        item_src = config.items
        table = read_table(_resolve(item_src.path, base), item_src.format, sep=item_src.separator)
        catalog = build_catalog(table, ItemColumns(**item_src.model_dump(include=set(ItemColumns.model_fields))))
    src = config.interactions
    table = read_table(_resolve(src.path, base), src.format, sep=src.separator)
    users = _user_attributes(config.users, base) if config.users is not None else None
    dataset = build_dataset(table, InteractionColumns(**src.model_dump(include=set(InteractionColumns.model_fields))),
                            catalog=catalog, strict=config.strict, duplicates=config.duplicates,
                            rating_range=config.rating_range, user_attributes=users, name=config.name)
    if catalog is None:
        catalog = ItemCatalog(Item(id=i, title=i) for i in dataset.item_vocab.ids)
    return DataBundle(dataset, catalog, rating_range=config.rating_range)


def load_files_toml(path: str | Path) -> DataBundle:
    """Load the files a TOML config names; config errors name the TOML file and the offending key."""
    path = Path(path)
    config = build(FileDatasetConfig, load_toml(path), where=str(path))
    return load_files(config, base=path.parent)


def _user_attributes(source: UserSource, base: Path) -> pd.DataFrame:
    """The users file as a frame indexed by user id; a missing column, an empty or repeated user id, or a
    non-number in a numeric column is an error naming the file, line and column."""
    table = read_table(_resolve(source.path, base), source.format, sep=source.separator)
    frame = table.frame
    columns = list(source.attributes) or [c for c in frame.columns if c != source.user]
    for column in [source.user, *columns, *source.numeric]:
        if column not in frame.columns:
            raise DataError(f"missing column '{column}' (the file has {', '.join(map(str, frame.columns))})",
                            path=table.path, field=column)
    unknown = [c for c in source.numeric if c not in columns]
    if unknown:
        raise DataError(f"numeric column '{unknown[0]}' is not among the attributes kept", path=table.path,
                        field=unknown[0])
    ids = frame[source.user]
    seen: dict[str, int] = {}
    for row, value in enumerate(ids):
        if value is None or not str(value).strip():
            raise DataError("empty user id", path=table.path, line=table.line_of(row), field=source.user)
        key = str(value).strip()
        if key in seen:
            raise DataError(f"user '{key}' appears twice (also on line {table.line_of(seen[key])})", path=table.path,
                            line=table.line_of(row), field=source.user)
        seen[key] = row
    out = frame[columns].copy()
    for column in source.numeric:
        values = []
        for row, value in enumerate(out[column]):
            if value is None or not str(value).strip():
                values.append(float("nan"))
                continue
            try:
                values.append(float(value))
            except ValueError:
                raise DataError(f"'{value}' is not a number", path=table.path, line=table.line_of(row),
                                field=column) from None
        out[column] = values
    out.index = pd.Index([str(v).strip() for v in ids], name="user")
    return out


def _resolve(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else base / path
