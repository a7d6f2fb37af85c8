"""Bad files give one clear error naming file, line and field; recoverable faults are counted."""

import logging
from pathlib import Path

import pandas as pd
import pytest

from recllm.data import ItemColumns, load_files, load_files_toml
from recllm.data.tables import read_table
from recllm.data.validation import InteractionColumns, LoadReport, build_catalog, build_dataset
from recllm.errors import ConfigError, DataError

GOOD = "user,item,rating,timestamp\nu1,a,5,100\nu1,b,3,200\nu2,a,4,150\n"
ITEMS = "item,title,year,genres\na,Alpha,1999,Drama|Comedy\nb,Beta,2001,Horror\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config(tmp_path: Path, interactions: str, items: str | None = ITEMS, **extra) -> dict:
    cfg: dict = {"interactions": {"path": str(write(tmp_path, "inter.csv", interactions))}, **extra}
    if items is not None:
        cfg["items"] = {"path": str(write(tmp_path, "items.csv", items)), "year": "year", "genres": "genres"}
    return cfg


def test_good_csv_loads_with_catalog(tmp_path: Path):
    bundle = load_files(config(tmp_path, GOOD))
    ds = bundle.dataset
    assert (ds.n_users, ds.n_items, len(ds)) == (2, 2, 3)
    assert ds.ratings.tolist() == [5, 3, 4]
    assert bundle.catalog["a"].genres == ("Drama", "Comedy") and bundle.catalog["a"].year == 1999


def test_truncated_csv_names_the_last_line(tmp_path: Path):
    with pytest.raises(DataError) as err:
        load_files(config(tmp_path, GOOD + "u2,b"))
    assert err.value.line == 5
    assert "inter.csv:5" in str(err.value) and "truncated" in str(err.value)


def test_missing_column_lists_what_is_there(tmp_path: Path):
    with pytest.raises(DataError, match=r"missing column 'rating'.*columns present: user, item, timestamp"):
        load_files(config(tmp_path, "user,item,timestamp\nu1,a,1\n"))


def test_non_numeric_rating_names_line_field_and_value(tmp_path: Path):
    with pytest.raises(DataError) as err:
        load_files(config(tmp_path, GOOD + "u2,b,five,300\n"))
    assert (err.value.line, err.value.field) == (5, "rating")
    assert str(err.value).endswith("inter.csv:5, field 'rating': expected a number, found 'five'")


def test_bad_timestamp_and_iso_timestamps(tmp_path: Path):
    with pytest.raises(DataError, match="field 'timestamp': expected a timestamp"):
        load_files(config(tmp_path, GOOD + "u2,b,4,yesterday\n"))
    ok = "user,item,rating,timestamp\nu1,a,5,2001-01-01T00:00:00Z\nu1,b,3,2001-01-02T00:00:00Z\n"
    ds = load_files(config(tmp_path, ok)).dataset
    assert ds.timestamps.tolist() == [978307200, 978393600]


def test_unknown_item_dropped_with_count_or_error_when_strict(tmp_path: Path, caplog):
    text = GOOD + "u2,zzz,4,300\n"
    with caplog.at_level(logging.WARNING):
        ds = load_files(config(tmp_path, text)).dataset
    assert len(ds) == 3
    assert "dropped 1 interactions with items missing from the catalog (first at line 5)" in caplog.text
    with pytest.raises(DataError, match=r"inter.csv:5, field 'item': item 'zzz' is not in the item catalog"):
        load_files(config(tmp_path, text, strict=True))


def test_duplicates_counted_or_rejected(tmp_path: Path, caplog):
    text = GOOD + "u1,a,2,400\n"
    report = LoadReport()
    table = read_table(write(tmp_path, "d.csv", text))
    with caplog.at_level(logging.WARNING):
        ds = build_dataset(table, report=report)
    assert report.duplicates == 1 and len(ds) == 3
    assert ds.ratings.tolist() == [3, 4, 2]  # keep-last keeps the later rating of (u1, a)
    with pytest.raises(DataError, match=r"user 'u1' and item 'a' appear more than once \(lines 2, 5\)"):
        build_dataset(table, strict=True)
    assert len(build_dataset(table, duplicates="keep-all")) == 4


def test_empty_file_and_header_only(tmp_path: Path):
    with pytest.raises(DataError, match="empty"):
        read_table(write(tmp_path, "e.csv", ""))
    with pytest.raises(DataError, match="no interactions"):
        build_dataset(read_table(write(tmp_path, "h.csv", "user,item,rating,timestamp\n")))


def test_empty_id_value(tmp_path: Path):
    with pytest.raises(DataError, match=r"x.csv:3, field 'user': empty value"):
        build_dataset(read_table(write(tmp_path, "x.csv", "user,item,rating,timestamp\nu1,a,1,1\n,a,1,2\n")))


def test_rating_range(tmp_path: Path):
    table = read_table(write(tmp_path, "r.csv", "user,item,rating,timestamp\nu1,a,1,1\nu1,b,9,2\n"))
    with pytest.raises(DataError, match=r"r.csv:3, field 'rating': rating 9 outside"):
        build_dataset(table, rating_range=(1, 5), strict=True)
    assert len(build_dataset(table, rating_range=(1, 5))) == 1  # not strict: dropped and counted


def test_jsonl_and_parquet_with_column_mapping(tmp_path: Path):
    jsonl = write(tmp_path, "i.jsonl", '{"uid": 1, "iid": "a", "ts": 5}\n\n{"uid": 2, "iid": "b", "ts": 6}\n')
    ds = build_dataset(read_table(jsonl), InteractionColumns(user="uid", item="iid", rating=None, timestamp="ts"))
    assert ds.user_vocab.ids == ("1", "2") and ds.timestamps.tolist() == [5, 6]
    bad = write(tmp_path, "b.jsonl", '{"uid": 1, "iid": "a"}\n{"uid": 2, "iid":\n')
    with pytest.raises(DataError, match=r"b.jsonl:2: invalid JSON"):
        read_table(bad)
    parquet = tmp_path / "p.parquet"
    pd.DataFrame({"u": ["x", "y"], "i": ["a", "b"], "r": [1.0, None]}).to_parquet(parquet)
    with pytest.raises(DataError, match=r"p.parquet:2, field 'r': expected a number, found an empty value"):
        build_dataset(read_table(parquet), InteractionColumns(user="u", item="i", rating="r", timestamp=None))


def test_item_table_errors(tmp_path: Path):
    with pytest.raises(DataError, match=r"it.csv:3, field 'item': item id 'a' appears twice \(first at line 2\)"):
        build_catalog(read_table(write(tmp_path, "it.csv", "item,title\na,A\na,B\n")))
    with pytest.raises(DataError, match=r"y.csv:2, field 'year': expected a number, found 'soon'"):
        build_catalog(read_table(write(tmp_path, "y.csv", "item,title,year\na,A,soon\n")), ItemColumns(year="year"))


def test_toml_config_relative_paths_and_unknown_keys(tmp_path: Path):
    write(tmp_path, "inter.tsv", GOOD.replace(",", "\t"))
    toml = write(tmp_path, "data.toml", 'name = "mine"\n[interactions]\npath = "inter.tsv"\n')
    bundle = load_files_toml(toml)
    assert bundle.name == "mine" and len(bundle.dataset) == 3 and bundle.catalog["a"].title == "a"
    implicit = write(tmp_path, "implicit.toml", '[interactions]\npath = "inter.tsv"\nrating = ""\n')
    assert load_files_toml(implicit).dataset.ratings is None
    typo = write(tmp_path, "typo.toml", '[interactions]\npath = "inter.tsv"\nuser_col = "u"\n')
    with pytest.raises(ConfigError, match=r"interactions.user_col: Extra inputs are not permitted"):
        load_files_toml(typo)


def test_missing_file_and_unknown_format(tmp_path: Path):
    with pytest.raises(DataError, match="file not found"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="cannot tell the format"):
        read_table(write(tmp_path, "data.txt", "a"))


def test_fractional_timestamps_are_truncated_with_a_warning(tmp_path: Path, caplog):
    table = read_table(write(tmp_path, "f.csv", "user,item,rating,timestamp\nu1,a,5,10.7\nu1,b,3,11\n"))
    with caplog.at_level(logging.WARNING):
        ds = build_dataset(table)
    assert ds.timestamps.tolist() == [10, 11]
    assert "1 timestamps in 'timestamp' have fractions of a second" in caplog.text and "line 2" in caplog.text


USERS = "user,tier,income,zip\nu1,gold,52000,02139\nu2,silver,,10001\nu9,gold,40000,94110\n"


def test_users_file_gives_attributes_numeric_where_declared(tmp_path: Path):
    users = {"path": str(write(tmp_path, "users.csv", USERS)), "attributes": ["tier", "income"],
             "numeric": ["income"]}
    attrs = load_files(config(tmp_path, GOOD, users=users)).dataset.user_attributes
    assert list(attrs.columns) == ["tier", "income"] and list(attrs.index) == ["u1", "u2"]  # u9 has no interactions
    assert attrs.loc["u1", "tier"] == "gold" and attrs.loc["u1", "income"] == 52000.0
    assert pd.isna(attrs.loc["u2", "income"]) and attrs["income"].dtype.kind == "f"
    every = load_files(config(tmp_path, GOOD, users={"path": str(tmp_path / "users.csv")})).dataset.user_attributes
    assert list(every.columns) == ["tier", "income", "zip"] and every.loc["u1", "zip"] == "02139"  # text kept


@pytest.mark.parametrize(("text", "options", "message"), [
    (USERS, {"attributes": ["tier", "age"]}, "missing column 'age'"),
    (USERS, {"user": "customer"}, "missing column 'customer'"),
    (USERS, {"attributes": ["tier"], "numeric": ["income"]}, "not among the attributes"),
    (USERS + "u1,bronze,1,00000\n", {}, "user 'u1' appears twice (also on line 2)"),
    ("user,tier\n,gold\n", {}, "empty user id"),
    (USERS.replace("52000", "lots"), {"numeric": ["income"]}, "'lots' is not a number"),
])
def test_users_file_errors_name_file_line_and_column(tmp_path: Path, text: str, options: dict, message: str):
    users = {"path": str(write(tmp_path, "users.csv", text)), **options}
    with pytest.raises(DataError) as err:
        load_files(config(tmp_path, GOOD, users=users))
    assert message in str(err.value) and "users.csv" in str(err.value)
