"""How well a preference reader reads people: field-level precision and recall on a labelled utterance set.

An utterance file is JSON lines, one message each: ``id``, ``class`` (the kind of difficulty), ``text``, an
optional ``shown`` list (item ids the recommender showed just before, for "the second one" and "older ones")
and ``expect``, the fields the message states: ``liked``, ``disliked`` (item ids), ``genres``,
``avoid_genres`` (catalog genres), ``year_min``, ``year_max`` (inclusive years or null) and
``unknown_titles`` (titles named that the catalog lacks, as written). Every value a reader produces counts
as a true or false positive, every expected value it misses as a false negative; fields are also pooled into
``titles`` (liked and disliked), ``genres`` (wanted and avoided) and ``years``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recllm.chat.state import Preferences, PreferenceUpdate
from recllm.data.catalog import ItemCatalog, normalize_title
from recllm.errors import DataError

LIST_FIELDS = ("liked", "disliked", "genres", "avoid_genres", "unknown_titles")
YEAR_FIELDS = ("year_min", "year_max")
FIELDS = (*LIST_FIELDS, *YEAR_FIELDS)
GROUPS = {"titles": ("liked", "disliked"), "genres": ("genres", "avoid_genres"), "years": YEAR_FIELDS,
          "unknown_titles": ("unknown_titles",)}
"""Pooled fields the report names (a title read with the wrong polarity counts against both of its fields)."""

Reader = Callable[[str, Preferences], PreferenceUpdate]


@dataclass(frozen=True)
class Utterance:
    id: str
    kind: str
    text: str
    shown: tuple[str, ...]
    expect: dict[str, Any]


def load_utterances(path: Path, catalog: ItemCatalog) -> list[Utterance]:
    """The utterances of ``path``, each checked against ``catalog`` (a clear error names the line and field)."""
    genres = {g for item in catalog for g in item.genres}
    out: list[Utterance] = []
    seen: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("text"), str) or not isinstance(raw.get("expect"),
                                                                                             dict):
            raise DataError(f"{where}: needs a 'text' string and an 'expect' object")
        expect = raw["expect"]
        missing = [f for f in FIELDS if f not in expect]
        if missing:
            raise DataError(f"{where}: 'expect' lacks {', '.join(missing)}")
        for field in ("liked", "disliked"):
            unknown = [i for i in expect[field] if str(i) not in catalog]
            if unknown:
                raise DataError(f"{where}: {field} names item ids not in the catalog: {unknown}")
        for field in ("genres", "avoid_genres"):
            unknown = [g for g in expect[field] if g not in genres]
            if unknown:
                raise DataError(f"{where}: {field} names genres not in the catalog: {unknown}")
        for field in YEAR_FIELDS:
            if expect[field] is not None and not isinstance(expect[field], int):
                raise DataError(f"{where}: {field} must be an integer year or null, got {expect[field]!r}")
        shown = tuple(str(i) for i in raw.get("shown") or ())
        if any(i not in catalog for i in shown):
            raise DataError(f"{where}: 'shown' names item ids not in the catalog")
        ident = str(raw.get("id", number))
        if ident in seen:
            raise DataError(f"{where}: duplicate id {ident!r}")
        seen.add(ident)
        out.append(Utterance(ident, str(raw.get("class", "")), raw["text"], shown, expect))
    if not out:
        raise DataError(f"{path}: no utterances")
    return out


def field_values(update: PreferenceUpdate | dict[str, Any]) -> dict[str, set[str]]:
    """Each field's values as comparable strings (titles the catalog lacks normalised, years as text)."""
    get = (lambda f: update.get(f)) if isinstance(update, dict) else (lambda f: getattr(update, f))
    out: dict[str, set[str]] = {}
    for field in LIST_FIELDS:
        values = get(field) or ()
        out[field] = {normalize_title(v) if field == "unknown_titles" else str(v) for v in values}
    for field in YEAR_FIELDS:
        value = get(field)
        out[field] = set() if value is None else {str(int(value))}
    return out


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, predicted: set[str], expected: set[str]) -> None:
        self.tp += len(predicted & expected)
        self.fp += len(predicted - expected)
        self.fn += len(expected - predicted)

    def figures(self) -> dict[str, float | int | None]:
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else None
        recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else None
        f1 = (2 * precision * recall / (precision + recall) if precision is not None and recall is not None
              and precision + recall > 0 else (0.0 if precision is not None and recall is not None else None))
        return {"precision": precision, "recall": recall, "f1": f1, "tp": self.tp, "fp": self.fp, "fn": self.fn}


def score(reader: Reader, utterances: Sequence[Utterance]) -> dict[str, Any]:
    """Field, pooled-field and per-class figures of ``reader`` on ``utterances``, with every miss listed."""
    by_field = {f: Counts() for f in FIELDS}
    by_class: dict[str, dict[str, Counts]] = {}
    exact = Counter[str]()
    totals = Counter[str]()
    misses: list[dict[str, Any]] = []
    for utterance in utterances:
        update = reader(utterance.text, Preferences(shown=utterance.shown))
        got, want = field_values(update), field_values(utterance.expect)
        wrong = {}
        per_class = by_class.setdefault(utterance.kind, {g: Counts() for g in GROUPS})
        for field in FIELDS:
            by_field[field].add(got[field], want[field])
            if got[field] != want[field]:
                wrong[field] = {"got": sorted(got[field]), "expected": sorted(want[field])}
        for group, fields in GROUPS.items():
            for field in fields:
                per_class[group].add(got[field], want[field])
        totals[utterance.kind] += 1
        exact[utterance.kind] += not wrong
        if wrong:
            misses.append({"id": utterance.id, "class": utterance.kind, "text": utterance.text, "wrong": wrong})
    groups = {}
    for group, fields in GROUPS.items():
        pooled = Counts()
        for field in fields:
            pooled.tp += by_field[field].tp
            pooled.fp += by_field[field].fp
            pooled.fn += by_field[field].fn
        groups[group] = pooled.figures()
    return {"n": len(utterances), "exact": sum(exact.values()) / len(utterances),
            "fields": {f: c.figures() for f, c in by_field.items()}, "groups": groups,
            "classes": {k: {"n": totals[k], "exact": exact[k] / totals[k],
                            **{g: c.figures()["f1"] for g, c in v.items()}} for k, v in sorted(by_class.items())},
            "misses": misses}


def classes(utterances: Iterable[Utterance]) -> Counter[str]:
    """How many utterances each class holds."""
    return Counter(u.kind for u in utterances)
