"""The declared rating range, one check for every source: strict errors name file, line and field; otherwise
out-of-range ratings are dropped with a logged count; bad ranges are config errors; `data info` shows it."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import recllm.data.validation as validation
from recllm.data import DataBundle, Item, ItemCatalog, load_files_toml, load_grouplens_1m, load_grouplens_100k
from recllm.data.cache import load_bundle, save_bundle
from recllm.data.tables import Table, read_table
from recllm.data.validation import LoadReport, build_dataset
from recllm.errors import ConfigError, DataError

# line 3 holds -1 and line 5 holds 7: both outside [1, 5]
OUT_OF_RANGE = "user,item,rating,timestamp\nu1,a,5,100\nu1,b,-1,200\nu2,a,4,150\nu2,b,7,250\n"
IN_RANGE = "user,item,rating,timestamp\nu1,a,5,100\nu1,b,1,200\nu2,a,4.5,150\n"
ITEMS = "item,title\na,Alpha\nb,Beta\n"


def files_toml(tmp_path: Path, interactions: str, top: str = "", rating: str | None = None) -> Path:
    """A files dataset: inter.csv, items.csv and data.toml, with ``top`` as extra top-level TOML lines."""
    (tmp_path / "inter.csv").write_text(interactions)
    (tmp_path / "items.csv").write_text(ITEMS)
    column = "" if rating is None else f'rating = "{rating}"\n'
    toml = tmp_path / "data.toml"
    toml.write_text(f'{top}\n[interactions]\npath = "inter.csv"\n{column}[items]\npath = "items.csv"\n')
    return toml


def test_strict_error_names_file_line_and_field(tmp_path: Path) -> None:
    toml = files_toml(tmp_path, OUT_OF_RANGE, "strict = true\nrating_range = [1, 5]")
    with pytest.raises(DataError) as err:
        load_files_toml(toml)
    assert (Path(err.value.path).name, err.value.line, err.value.field) == ("inter.csv", 3, "rating")
    assert str(err.value).endswith("inter.csv:3, field 'rating': rating -1 outside the allowed range [1, 5] "
                                   "(2 such rows)")


def test_non_strict_drops_with_a_logged_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    toml = files_toml(tmp_path, OUT_OF_RANGE, "rating_range = [1, 5]")
    with caplog.at_level(logging.WARNING):
        bundle = load_files_toml(toml)
    assert "inter.csv: dropped 2 interactions with a rating outside the allowed range [1, 5] (first at line 3, " \
           "field 'rating')" in caplog.text
    assert bundle.dataset.ratings.tolist() == [5, 4]
    assert bundle.rating_range == (1.0, 5.0)


def test_every_dropped_row_is_counted_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An out-of-range row for an unknown item counts once; a dropped row does not repeat a kept pair."""
    (tmp_path / "r.csv").write_text(OUT_OF_RANGE + "u1,a,9,300\nu3,zzz,9,400\nu3,zzz,2,500\n")
    report = LoadReport()
    catalog = ItemCatalog([Item(id="a", title="Alpha"), Item(id="b", title="Beta")])
    with caplog.at_level(logging.WARNING):
        ds = build_dataset(read_table(tmp_path / "r.csv"), catalog=catalog, rating_range=(1, 5), report=report)
    assert (report.out_of_range, report.unknown_items, report.duplicates) == (4, 1, 0)
    assert report.rows_read - report.out_of_range - report.unknown_items - report.duplicates == len(ds) == 2
    assert ds.ratings.tolist() == [5, 4]  # (u1, a, 5) kept: the later (u1, a, 9) was dropped, not a repeat
    assert "dropped 1 repeated" not in caplog.text


@pytest.mark.parametrize(("value", "fragment"), [
    ("[5, 1]", "rating_range: Value error, the low end must be below the high end (got [5, 1])"),
    ("[3, 3]", "the low end must be below the high end"),
    ("[1, inf]", "both ends must be finite numbers"),
    ("[nan, 5]", "both ends must be finite numbers"),
    ("[1]", "rating_range"),
    ("[1, 2, 3]", "rating_range"),
    ('["1", "5"]', "rating_range.0: Input should be a valid number"),
    ("[true, 5]", "rating_range.0: Input should be a valid number"),
    ('"1-5"', "rating_range: Input should be a valid tuple"),
])
def test_bad_rating_range_is_a_config_error(tmp_path: Path, value: str, fragment: str) -> None:
    toml = files_toml(tmp_path, IN_RANGE, f"rating_range = {value}")
    with pytest.raises(ConfigError) as err:
        load_files_toml(toml)
    message = str(err.value)
    assert message.startswith(f"{toml}: ") and "rating_range" in message and fragment in message, message


def test_rating_range_without_a_rating_column_is_a_config_error(tmp_path: Path) -> None:
    toml = files_toml(tmp_path, "user,item,timestamp\nu1,a,1\n", "rating_range = [1, 5]", rating="")
    with pytest.raises(ConfigError, match=r"data.toml: .*rating_range is set but the interactions have no rating"):
        load_files_toml(toml)


def test_bad_bounds_given_in_code_are_a_config_error(tmp_path: Path) -> None:
    table = read_table(files_toml(tmp_path, IN_RANGE).parent / "inter.csv")
    with pytest.raises(ConfigError, match=r"rating_range: the low end must be below the high end \(got \[5, 1\]\)"):
        build_dataset(table, rating_range=(5, 1))


def test_a_valid_range_passes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        bundle = load_files_toml(files_toml(tmp_path, IN_RANGE, "strict = true\nrating_range = [1, 5]"))
        half = load_files_toml(files_toml(tmp_path, IN_RANGE, "rating_range = [0.5, 5.0]"))
    assert bundle.dataset.ratings.tolist() == [5, 1, 4.5]  # both ends are allowed
    assert bundle.rating_range == (1.0, 5.0) and half.rating_range == (0.5, 5.0)
    assert len(half.dataset) == 3 and "dropped" not in caplog.text


def test_without_a_declared_range_every_rating_is_kept(tmp_path: Path) -> None:
    bundle = load_files_toml(files_toml(tmp_path, OUT_OF_RANGE))
    assert bundle.rating_range is None and bundle.dataset.ratings.tolist() == [5, -1, 4, 7]


def test_grouplens_and_files_go_through_the_same_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    calls: list[tuple[str, tuple[float, float]]] = []
    real = validation.check_rating_range

    def spy(table: Table, column: str, ratings: np.ndarray, rating_range: tuple[float, float],
            **kwargs: Any) -> np.ndarray:
        """The real check, noting which file it ran on and with which range."""
        calls.append((Path(table.path).name, (rating_range[0], rating_range[1])))
        return real(table, column, ratings, rating_range, **kwargs)

    monkeypatch.setattr(validation, "check_rating_range", spy)
    ml100k = tmp_path / "100k"
    ml100k.mkdir()
    (ml100k / "u.item").write_text("1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(["0"] * 19) + "\n")
    (ml100k / "u.user").write_text("1|24|M|technician|85711\n")
    (ml100k / "u.data").write_text("1\t1\t5\t874965758\n1\t1\t0\t874965759\n")
    ml1m = tmp_path / "1m"
    ml1m.mkdir()
    (ml1m / "movies.dat").write_text("1::Toy Story (1995)::Comedy\n2::Heat (1995)::Action\n")
    (ml1m / "users.dat").write_text("1::F::1::10::48067\n")
    (ml1m / "ratings.dat").write_text("1::1::5::978300760\n1::2::6::978300761\n")
    with caplog.at_level(logging.WARNING):
        assert len(load_grouplens_100k(ml100k).dataset) == 1
        assert len(load_grouplens_1m(ml1m).dataset) == 1
        load_files_toml(files_toml(tmp_path, IN_RANGE, "rating_range = [1, 5]"))
    assert calls == [("u.data", (1.0, 5.0)), ("ratings.dat", (1.0, 5.0)), ("inter.csv", (1.0, 5.0))]
    assert "u.data: dropped 1 interactions with a rating outside the allowed range [1, 5] (first at line 2" \
        in caplog.text
    assert "ratings.dat: dropped 1 interactions" in caplog.text
    with pytest.raises(DataError, match=r"ratings.dat:2, field 'rating': rating 6 outside the allowed range"):
        load_grouplens_1m(ml1m, strict=True)
    assert load_grouplens_100k(ml100k).rating_range == (1.0, 5.0)


def test_the_cache_keeps_the_range(tmp_path: Path) -> None:
    bundle = load_files_toml(files_toml(tmp_path, IN_RANGE, "rating_range = [1, 5]"))
    save_bundle(bundle, tmp_path / "cached")
    again = load_bundle(tmp_path / "cached")
    assert isinstance(again, DataBundle) and again.rating_range == (1.0, 5.0)
    np.testing.assert_array_equal(again.dataset.ratings, bundle.dataset.ratings)
    plain = load_files_toml(files_toml(tmp_path, IN_RANGE))
    save_bundle(plain, tmp_path / "plain")
    assert load_bundle(tmp_path / "plain").rating_range is None  # type: ignore[union-attr]


def data_info(toml: Path) -> subprocess.CompletedProcess[str]:
    """`recllm data info` on a files dataset, run as a real process (as tests/test_cli.py does)."""
    return subprocess.run([sys.executable, "-m", "recllm", "data", "info", "--dataset", f"files:{toml}"],
                          capture_output=True, text=True, timeout=600, check=False)


def range_row(stdout: str) -> str:
    """The table row of `data info` that names the rating range."""
    [row] = [line for line in stdout.splitlines() if "rating range" in line]
    return row


def test_data_info_shows_the_enforced_range(tmp_path: Path) -> None:
    declared = data_info(files_toml(tmp_path, IN_RANGE, "rating_range = [1, 5]"))
    assert declared.returncode == 0, declared.stderr
    assert "1 .. 5 (enforced)" in range_row(declared.stdout)
    undeclared = data_info(files_toml(tmp_path, IN_RANGE))
    assert undeclared.returncode == 0, undeclared.stderr
    assert range_row(undeclared.stdout).replace("│", "").split() == ["rating", "range", "none"]
    strict = data_info(files_toml(tmp_path, OUT_OF_RANGE, "strict = true\nrating_range = [1, 5]"))
    assert strict.returncode == 2 and "inter.csv:3, field 'rating': rating -1 outside" in strict.stderr
