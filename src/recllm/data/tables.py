"""Reading tabular files (CSV/TSV, Parquet, JSON Lines) into all-string frames with line numbers.

Values stay strings here so that validation can report the exact raw value, file and line of any bad
field; typed conversion happens in ``recllm.data.validation``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recllm.errors import DataError

FORMATS = ("csv", "tsv", "parquet", "jsonl")


@dataclass(frozen=True)
class Table:
    """Raw string table read from ``path``; row i came from line ``lines[i]`` of the file.

    For Parquet, "line" means the 1-based row number.
    """

    frame: pd.DataFrame
    path: Path
    lines: np.ndarray

    def line_of(self, row: int) -> int:
        return int(self.lines[int(row)])


def detect_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    for suffix in reversed(suffixes):
        name = suffix.lstrip(".")
        if name in ("csv", "tsv", "parquet"):
            return name
        if name in ("jsonl", "ndjson"):
            return "jsonl"
        if name == "pq":
            return "parquet"
    raise DataError(f"cannot tell the format from the file name; give one of {', '.join(FORMATS)}",
                    path=path)


def read_table(path: str | Path, fmt: str | None = None, *, sep: str | None = None,
               header: bool = True, names: list[str] | None = None, encoding: str = "utf-8") -> Table:
    """Read a whole file as strings. Missing values become ``None``; parse failures become DataError."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=path)
    fmt = (fmt or detect_format(path)).lower()
    if fmt in ("csv", "tsv"):
        return _read_delimited(path, sep or ("\t" if fmt == "tsv" else ","), header, names, encoding)
    if fmt == "parquet":
        return _read_parquet(path)
    if fmt == "jsonl":
        return _read_jsonl(path, encoding)
    raise DataError(f"unknown format '{fmt}' (expected one of {', '.join(FORMATS)})", path=path)


def _read_delimited(path: Path, sep: str, header: bool, names: list[str] | None,
                    encoding: str) -> Table:
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(f"not valid {encoding} text ({exc.reason})", path=path, line=line) from None
    if len(sep) > 1:  # e.g. GroupLens '::' - rewrite to a one-character separator the C parser takes
        if "\t" in text:
            raise DataError(f"tab characters in a '{sep}'-separated file", path=path)
        text, sep = text.replace(sep, "\t"), "\t"
    expected = len(names) if names else None
    if header and not text.strip():
        raise DataError("file is empty (no header line)", path=path)
    lines = _check_field_counts(text, sep, path, header, expected)
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                            header=0 if header else None, names=names, engine="c",
                            quoting=csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE,
                            skip_blank_lines=True)
    except pd.errors.ParserError as exc:
        raise DataError(f"cannot parse: {str(exc).strip()}", path=path) from None
    except pd.errors.EmptyDataError:
        raise DataError("file is empty", path=path) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.replace({"": None})
    if lines is None or len(lines) != len(frame):
        lines = np.arange(len(frame)) + (2 if header else 1)
    return Table(frame, path, lines)


def _check_field_counts(text: str, sep: str, path: Path, header: bool,
                        expected: int | None) -> np.ndarray | None:
    """Fail on a row with too few or too many fields (a truncated or corrupt line), naming the line;
    return the line number of every data row.

    Quoted CSV fields may hold separators or newlines, so quoted text is left to pandas' own parser and
    its rows are numbered as if one per line.
    """
    if sep == "," and '"' in text:
        return None
    lines = text.split("\n")
    if expected is None and header:
        expected = lines[0].count(sep) + 1
    data_lines = []
    for number, line in enumerate(lines, start=1):
        if number == 1 and header:
            continue
        if not line.strip():
            continue
        data_lines.append(number)
        fields = line.rstrip("\r").count(sep) + 1
        if expected is None:
            expected = fields
        if fields != expected:
            truncated = " (the file looks truncated)" if number >= len(lines) - 1 and fields < expected else ""
            raise DataError(f"expected {expected} fields, found {fields}{truncated}", path=path, line=number)
    return np.asarray(data_lines, dtype=np.int64)


def _read_parquet(path: Path) -> Table:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"cannot read Parquet: {exc}", path=path) from None
    missing = frame.isna()
    frame = frame.astype(str).astype(object)
    frame[missing] = None
    return Table(frame.reset_index(drop=True), path, np.arange(len(frame)) + 1)


def _read_jsonl(path: Path, encoding: str) -> Table:
    records = []
    numbers = []
    with open(path, encoding=encoding) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON ({exc.msg})", path=path, line=number) from None
            if not isinstance(record, dict):
                raise DataError("each line must be a JSON object", path=path, line=number)
            numbers.append(number)
            records.append({k: None if v is None else (json.dumps(v) if isinstance(v, dict | list) else str(v))
                            for k, v in record.items()})
    if not records:
        raise DataError("file has no records", path=path)
    return Table(pd.DataFrame.from_records(records), path, np.asarray(numbers, dtype=np.int64))
