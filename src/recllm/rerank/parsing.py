"""Tolerant reading of a generated ranked list: indices, labels, titles (fuzzy), JSON, prose.

The model is asked for candidate numbers, one a line, but small models answer in many shapes. This parser
reads, in this order of preference:

1. JSON: an object anywhere (``{"ranking": [3, 1]}``), or a list that is the whole answer (``[3, 1]``,
   ``["The Matrix", "[2]"]``), also when cut off mid-way (``{"ranking": [3, 1, 2``);
2. otherwise line by line. A leading rank marker ("1.", "2)", "(3)", "-", "*") followed by more text is a
   position, not a reference: "1. Titanic (1997)" names Titanic. On what remains:
   - explicit references in brackets or after "#" ("[3]", "#3", "[B]") win;
   - a bare list of indices or labels ("3", "3.", "3, 1, 2", "3 > 1", "B") gives those;
   - a title, fuzzily matched against the candidates only (typos, "Matrix, The", a wrong year), whole or
     before a separator ("Titanic (1997); genres: ...", "Fargo - a dark comedy");
   - candidate titles mentioned inside prose ("I would pick Fargo, then Heat"), in order of appearance;
   - a title of a catalog item that is not a candidate, or the text of a list entry (it had a rank
     marker) that names nothing, is hallucinated;
   - other prose is ignored.

A reference that names no candidate (index out of range, unknown label, out-of-set title) is recorded as
hallucinated with its raw text; a text from which nothing could be read is a format error. Repeats are
left in ``items`` for grounding to count.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from recllm.data.catalog import ItemCatalog, normalize_title

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_ANSWER = re.compile(r"(?:final\s+)?answer\s*:", re.IGNORECASE)
_RANK_MARKER = re.compile(
    r"^\s*(?:[-*•·]|\d{1,3}\s*[.)]|\(\d{1,3}\)|(?:rank|top)\s*\d{1,3}\s*[:.)-])\s+(?=\S)(?P<rest>.*)$", re.IGNORECASE)
_EXPLICIT = re.compile(r"\[\s*([^\[\]]{1,80}?)\s*\]|#\s*(\d{1,3})\b")
_REF_TOKEN = r"[\[(]?\s*#?\s*[A-Za-z0-9]{1,3}\s*[\])]?\.?"
_SEPARATOR = r"\s*(?:,|;|>|->|→|\band\b|\bthen\b|\s)\s*"
_BARE_LIST = re.compile(rf"^\s*{_REF_TOKEN}(?:{_SEPARATOR}{_REF_TOKEN})*\s*[.!]?\s*$")
_TOKEN = re.compile(r"[A-Za-z0-9]{1,3}")
_HEAD_SPLIT = re.compile(r"\s*(?:;|\s[-–—]\s|:\s|\|)\s*")
_YEAR = re.compile(r"\(\s*\d{4}\s*\)")
_QUOTED = re.compile(r"^[\"'“”‘’*_]+|[\"'“”‘’*_.,!]+$")
_RANKING_KEYS = frozenset({"ranking", "rank", "ranked", "items", "recommendations"})
_MIN_PROSE_TITLE = 4  # shorter titles ("Up", "It") are not searched for inside prose


@dataclass(frozen=True)
class ParsedRanking:
    """What a generated ranking names: ``items`` (candidate ids in order, repeats kept), ``hallucinated``
    (raw references outside the candidates), ``format_error`` (nothing readable), ``ignored`` (prose lines
    that named nothing), and ``json`` (whether the answer was read as JSON)."""

    items: tuple[str, ...]
    hallucinated: tuple[str, ...]
    format_error: bool
    ignored: tuple[str, ...] = ()
    json: bool = False

    @property
    def mentions(self) -> int:
        """All references read, valid or not."""
        return len(self.items) + len(self.hallucinated)


def _plain(text: str) -> str:
    """Lowercase ascii words separated by single spaces (for substring search of titles in prose)."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


class RankingParser:
    """Reads generated rankings for one prompt: ``candidates`` (ids, in shown order) with their ``labels``
    ("1".."n" or letters), titles from ``catalog``. ``cutoff`` is the fuzzy-title similarity threshold;
    matching only among the candidates makes a lenient cutoff safe (an exact title of a catalog item that
    is not a candidate is recognised first, so "Aliens" is not read as the candidate "Alien")."""

    def __init__(self, candidates: Sequence[str], labels: Sequence[str], catalog: ItemCatalog, *,
                 cutoff: float = 0.75) -> None:
        if len(labels) != len(candidates):
            raise ValueError(f"{len(candidates)} candidates but {len(labels)} labels")
        self.candidates = tuple(str(c) for c in candidates)
        self.catalog = catalog
        self.cutoff = cutoff
        self._by_label = {label.strip().upper(): item for item, label in zip(self.candidates, labels, strict=True)}
        self._candidate_set = frozenset(self.candidates)
        self._shown = ItemCatalog(catalog[c] for c in self.candidates)
        self._patterns: list[tuple[re.Pattern[str], str]] = []
        for item in self._shown:
            for variant in {_plain(item.display_title), _plain(normalize_title(item.title))}:
                if len(variant) >= _MIN_PROSE_TITLE:
                    self._patterns.append((re.compile(rf"(?<![a-z0-9]){re.escape(variant)}(?![a-z0-9])"), item.id))

    # ---- entry point ------------------------------------------------------------------------------
    def parse(self, text: str) -> ParsedRanking:
        """The candidates (and hallucinations) ``text`` names, in order."""
        body = self._answer_part(text)
        refs = self._json_refs(body)
        items: list[str] = []
        hallucinated: list[str] = []
        ignored: list[str] = []
        if refs is not None:
            for ref in refs:
                found, bad = self._resolve_json_element(ref)
                items.extend(found)
                hallucinated.extend(bad)
        else:
            for line in body.splitlines():
                if not line.strip():
                    continue
                found, bad, named = self._parse_line(line)
                items.extend(found)
                hallucinated.extend(bad)
                if not named:
                    ignored.append(line.strip())
        return ParsedRanking(items=tuple(items), hallucinated=tuple(hallucinated),
                             format_error=not items and not hallucinated, ignored=tuple(ignored),
                             json=refs is not None)

    # ---- structure --------------------------------------------------------------------------------
    @staticmethod
    def _answer_part(text: str) -> str:
        """The text after the last "Answer:" (chain-of-thought answers), without code fences."""
        fenced = _FENCE.search(text)
        if fenced:
            text = fenced.group(1)
        marks = list(_ANSWER.finditer(text))
        if marks and text[marks[-1].end():].strip():
            text = text[marks[-1].end():]
        return text.strip()

    @staticmethod
    def _json_refs(body: str) -> list[Any] | None:
        """The ranking's elements when the answer is JSON (an object anywhere, or a list that is the whole
        answer), also when cut off mid-way; None when it is not JSON."""
        decoder = json.JSONDecoder()
        brace = body.find("{")
        starts = ([brace] if brace >= 0 else []) + ([0] if body.startswith("[") else [])
        for start in starts:
            try:
                value, end = decoder.raw_decode(body, start)
            except json.JSONDecodeError:
                bracket = body.find("[", start)
                if bracket >= 0 and "]" not in body[bracket:] and re.match(r"\[\s*(?:-?\d|\")", body[bracket:]):
                    return _truncated_elements(body[bracket:])
                continue
            if isinstance(value, dict):
                lists = [v for k, v in value.items() if isinstance(v, list) and str(k).lower() in _RANKING_KEYS]
                lists = lists or [v for v in value.values() if isinstance(v, list)]
                if lists:
                    return list(lists[0])
            elif isinstance(value, list) and not re.search(r"[A-Za-z0-9]", body[end:]):
                return list(value)  # a list followed by more references is "[3] Title" lines, not JSON
        return None

    def _resolve_json_element(self, ref: Any) -> tuple[list[str], list[str]]:
        if isinstance(ref, bool) or ref is None:
            return [], [json.dumps(ref)]
        if isinstance(ref, int | float):
            return self._resolve_token(str(int(ref)) if float(ref).is_integer() else str(ref))
        if isinstance(ref, dict):
            for key in ("index", "number", "label", "id", "title", "item"):
                if key in ref:
                    return self._resolve_json_element(ref[key])
            return [], [json.dumps(ref)]
        if isinstance(ref, list):
            return [], [json.dumps(ref)]
        text = str(ref).strip()
        if text in self._candidate_set and text.upper() not in self._by_label:
            return [text], []  # the item id itself
        found, bad, named = self._parse_line(text)
        return (found, bad) if named else ([], [text])

    def _parse_line(self, line: str) -> tuple[list[str], list[str], bool]:
        """(candidates named, hallucinated references, whether the line named anything)."""
        line = line.strip()
        marker = _RANK_MARKER.match(line)
        rest = marker.group("rest").strip() if marker else line
        explicit = [(m.group(1) or m.group(2)).strip() for m in _EXPLICIT.finditer(rest)]
        if explicit:
            found: list[str] = []
            bad: list[str] = []
            for ref in explicit:
                f, b = self._resolve_explicit(ref)
                found += f
                bad += b
            return found, bad, True
        tokens = self._bare_tokens(rest)
        if tokens is not None:
            return (*self._resolve_tokens(tokens), True)
        title, outside = self._title_ref(rest)
        if title is not None:
            return [title], [], True
        mentioned = self._mentioned(rest)
        if mentioned:
            return mentioned, [], True
        if outside is not None:
            return [], [outside], True
        if marker is not None or _YEAR.search(rest):
            return [], [_clean(rest)], True  # a list entry naming something we cannot ground
        return [], [], False

    # ---- references -------------------------------------------------------------------------------
    def _bare_tokens(self, text: str) -> list[str] | None:
        """The tokens of a bare list of indices or labels ("3", "3.", "3, 1 > 2", "B"), else None."""
        if not _BARE_LIST.match(text):
            return None
        tokens = [t for t in _TOKEN.findall(text) if t.lower() not in ("and", "then")]
        if tokens and all(t.isdigit() or t.upper() in self._by_label for t in tokens):
            return tokens
        return None

    def _resolve_tokens(self, tokens: Sequence[str]) -> tuple[list[str], list[str]]:
        found: list[str] = []
        bad: list[str] = []
        for token in tokens:
            f, b = self._resolve_token(token)
            found += f
            bad += b
        return found, bad

    def _resolve_token(self, token: str) -> tuple[list[str], list[str]]:
        """A label ("3", "B"), or a 1-based index when the labels are not numbers; else hallucinated."""
        key = token.strip().rstrip(".").upper()
        item = self._by_label.get(key)
        if item is None and key.isdigit() and 1 <= int(key) <= len(self.candidates):
            item = self.candidates[int(key) - 1]
        return ([item], []) if item is not None else ([], [token.strip()])

    def _resolve_explicit(self, ref: str) -> tuple[list[str], list[str]]:
        """A bracketed reference: a label or index ("3", "B"), a list of them ("3, 1"), else a title."""
        key = ref.strip().lstrip("#").strip().rstrip(".")
        tokens = self._bare_tokens(key)
        if tokens is not None:
            return self._resolve_tokens(tokens)
        if key.isdigit() or len(key) <= 2:
            return [], [ref]
        title, outside = self._title_ref(key)
        if title is not None:
            return [title], []
        return [], [outside or ref]

    def _title_ref(self, text: str) -> tuple[str | None, str | None]:
        """(candidate, non-candidate catalog item) that ``text`` names as a title, whole or before a separator.

        Exact (normalised) titles are tried first across the whole catalog, so a real non-candidate title is
        hallucinated rather than bent onto a similar candidate; then fuzzy among the candidates; then fuzzy
        across the catalog (an out-of-set title with a typo).
        """
        text = _clean(text)
        heads = [text] + [h for h in (_clean(p) for p in _HEAD_SPLIT.split(text)[:1]) if h and h != text]
        heads = [h for h in heads if len(h) >= 2]
        outside: str | None = None
        for head in heads:
            exact = self.catalog.lookup_all(head, cutoff=1.0, limit=5)
            inside = [item.id for item in exact if item.id in self._candidate_set]
            if inside:
                return inside[0], None
            if exact and outside is None:
                outside = exact[0].id
        if outside is not None:
            return None, outside
        for head in heads:
            found = self._shown.lookup_all(head, cutoff=self.cutoff, limit=1)
            if found:
                return found[0].id, None
        for head in heads:
            if len(head) >= _MIN_PROSE_TITLE:
                item = self.catalog.lookup(head)
                if item is not None and item.id not in self._candidate_set:
                    return None, item.id
        return None, None

    def _mentioned(self, text: str) -> list[str]:
        """Candidates whose titles occur in ``text``, in order of appearance; a longer title containing a
        shorter one at the same place wins ("Toy Story 2" over "Toy Story")."""
        plain = _plain(text)
        spans: list[tuple[int, int, str]] = []
        for pattern, item in self._patterns:
            spans.extend((m.start(), m.end(), item) for m in pattern.finditer(plain))
        spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
        out: list[str] = []
        covered_until = -1
        for begin, end, item in spans:
            if begin < covered_until:
                continue
            out.append(item)
            covered_until = end
        return out


def _clean(text: str) -> str:
    """Text without surrounding quotes, emphasis marks and trailing punctuation."""
    return _QUOTED.sub("", text.strip()).strip()


def _truncated_elements(chunk: str) -> list[Any] | None:
    """Elements of a JSON list cut off mid-way (``{"ranking": [3, 1, 2``): numbers and complete strings."""
    bracket = chunk.find("[")
    if bracket < 0:
        return None
    elements: list[Any] = []
    for match in re.finditer(r"\"((?:[^\"\\]|\\.)*)\"|(-?\d+)", chunk[bracket + 1:]):
        if match.group(1) is not None:
            elements.append(match.group(1))
        else:
            elements.append(int(match.group(2)))
    return elements or None


def parse_ranking(text: str, candidates: Sequence[str], labels: Sequence[str], catalog: ItemCatalog, *,
                  cutoff: float = 0.75) -> ParsedRanking:
    """Read a generated ranking; see the module docstring for what is understood."""
    return RankingParser(candidates, labels, catalog, cutoff=cutoff).parse(text)
