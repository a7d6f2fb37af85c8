"""Reading preferences from one chat message: rules that always work, and a language model whose JSON answer
is used only where it checks out against the catalog.

Rules read catalog titles (liked, or disliked when a negation such as "didn't like" or "hated" precedes them
in the same clause), genres (avoided after "no", "not", "without", "avoid", ...), decades ("80s",
"1980s", "eighties"), bounds ("before 1990", "after 1995"), critiques relative to the last list shown
("older", "newer") and references to it ("the second one", "#3"). The model is asked for the same fields
as JSON; titles it names must resolve in the catalog, genres must be catalog genres and years plausible,
or they are dropped (counted in ``notes``). Whatever the model says, the rules' reading is kept.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from recllm.chat.state import Preferences, PreferenceUpdate
from recllm.data.catalog import ItemCatalog
from recllm.llm.base import LLM, GenerationRequest, LLMError
from recllm.tasks.titles import TitleScanner, fold

log = logging.getLogger(__name__)

_CLAUSE = re.compile(r"[.;!?\n]+|,|\bbut\b|\bthough\b|\bhowever\b", re.IGNORECASE)
_NEGATIVE = re.compile(r"\b(?:not|no|never|without|avoid|except|hate[ds]?|hated|dislike[ds]?|disliked|"
                       r"didn'?t|don'?t|doesn'?t|wasn'?t|isn'?t|boring|awful|terrible|none of|nothing|"
                       r"already (?:seen|watched)|seen it|skip)\b", re.IGNORECASE)
_SEEN = re.compile(r"\b(?:already (?:seen|watched)|seen (?:it|that)|watched (?:it|that))\b", re.IGNORECASE)
_DECADE = re.compile(r"(?<![0-9])(?:(?P<century>19|20))?(?P<decade>[0-9])0'?s\b", re.IGNORECASE)
_WORD_DECADES = {"twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950, "sixties": 1960,
                 "seventies": 1970, "eighties": 1980, "nineties": 1990}
_BOUND = re.compile(r"\b(?P<rel>before|until|older than|earlier than|pre|after|since|newer than|later than|post)"
                    r"[\s-]*(?P<year>(?:18|19|20)\d{2})\b", re.IGNORECASE)
_OLDER = re.compile(r"\b(?:older|earlier|classic|less recent|not so new|from before)\b", re.IGNORECASE)
_NEWER = re.compile(r"\b(?:newer|more recent|recent|later|modern|latest)\b", re.IGNORECASE)
_ORDINALS = {"first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2, "fourth": 3, "4th": 3,
             "fifth": 4, "5th": 4, "sixth": 5, "6th": 5, "seventh": 6, "7th": 6, "eighth": 7, "8th": 7,
             "ninth": 8, "9th": 8, "tenth": 9, "10th": 9, "last": -1}
_ORDINAL = re.compile(r"\b(?:the\s+)?(?P<word>" + "|".join(_ORDINALS) + r")(?:\s+(?:one|movie|film|suggestion))?\b"
                      r"|(?:#|number\s+|no\.\s*)(?P<number>\d{1,2})\b", re.IGNORECASE)
_OTHERS = re.compile(r"\b(?:something else|other ones|others|different ones|anything else|more suggestions|"
                     r"show me more|more of them|next ones)\b", re.IGNORECASE)
_WISH = re.compile(r"\b(?:want|looking for|in the mood|something|feel like|wish|prefer|would like)\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z][a-z'-]*")
_FILLER_WORDS = """
a an the and or of to for in on at with about from by me my i i'm im we us you it its this that these those
some something anything any one ones movie movies film films show shows watch watching see seeing
want wanna looking look mood feel like would prefer wish please maybe kind sort bit really very just
more less most least again also too please give get find recommend suggestions suggestion tonight today
good great nice new old older newer recent classic era decade year years period
"""
_FILLER = frozenset(_FILLER_WORDS.split())


MIN_SPAN = 4
"""A critique ("older", "newer") keeps the range's other bound only when at least this many years remain."""


class RuleExtractor:
    """Deterministic reading of a message against the catalog (see the module docstring)."""

    def __init__(self, catalog: ItemCatalog) -> None:
        self.catalog = catalog
        self.scanner = TitleScanner(catalog)

    def extract(self, message: str, state: Preferences) -> PreferenceUpdate:
        liked: list[str] = []
        disliked: list[str] = []
        genres: list[str] = []
        avoid: list[str] = []
        year_min = year_max = None
        clear_years = False
        notes: list[str] = []
        wish_phrases: list[str] = []
        text = fold(" ".join(message.split()))
        for clause in (c.strip() for c in _CLAUSE.split(text)):
            if not clause:
                continue
            negative = bool(_NEGATIVE.search(clause))
            mentions = self.scanner.titles(clause)
            for mention in mentions:
                before = clause[:mention.start]
                (disliked if _NEGATIVE.search(before) or _SEEN.search(clause) else liked).append(mention.item)
            rest = clause
            for mention in sorted(mentions, key=lambda m: -m.start):
                rest = rest[:mention.start] + " " + rest[mention.end:]
            for genre in self.scanner.genres(rest):
                (avoid if negative else genres).append(genre)
            for index in self._ordinals(rest):
                if not state.shown:
                    notes.append("a reference to a list item, but no list was shown yet")
                    continue
                if -len(state.shown) <= index < len(state.shown):
                    item = state.shown[index]
                    (disliked if negative else liked).append(item)
            if _WISH.search(clause) and not negative:
                wish_phrases.append(self._wish(rest))
            lo, hi = self._years(rest, state)
            if lo is not None or hi is not None:
                clear_years = True
                year_min = lo if lo is not None else year_min
                year_max = hi if hi is not None else year_max
        unknown = tuple(t for t in self.scanner.unknown_titles(text))
        wishes = tuple(dict.fromkeys(w for w in wish_phrases if w))
        return PreferenceUpdate(others=bool(_OTHERS.search(text)),
                                liked=tuple(dict.fromkeys(liked)), disliked=tuple(dict.fromkeys(disliked)),
                                genres=tuple(dict.fromkeys(genres)), avoid_genres=tuple(dict.fromkeys(avoid)),
                                year_min=year_min, year_max=year_max, clear_years=clear_years, wishes=wishes,
                                unknown_titles=unknown, notes=tuple(notes))

    def _wish(self, rest: str) -> str:
        """The free-text part of a wishing clause once titles, genres, years and filler words are gone
        ("" when nothing is left): "something with space battles" gives "space battles"."""
        rest = _DECADE.sub(" ", _BOUND.sub(" ", self.scanner.without_genres(rest))).lower()
        words = [w for w in _WORD.findall(rest) if len(w) > 2 and w not in _FILLER and w not in _ORDINALS
                 and w not in _WORD_DECADES and not _NEGATIVE.fullmatch(w)]
        return " ".join(words)

    @staticmethod
    def _ordinals(text: str) -> list[int]:
        out = []
        for m in _ORDINAL.finditer(text):
            if m["word"]:
                out.append(_ORDINALS[m["word"].lower()])
            elif m["number"] and 1 <= int(m["number"]) <= 20:
                out.append(int(m["number"]) - 1)
        return out

    def _years(self, text: str, state: Preferences) -> tuple[int | None, int | None]:
        lo = hi = None
        for m in _DECADE.finditer(text):
            century = int(m["century"]) * 100 if m["century"] else 1900
            start = century + int(m["decade"]) * 10
            lo, hi = start, start + 9
        for word, start in _WORD_DECADES.items():
            if re.search(rf"\b{word}\b", text, re.IGNORECASE):
                lo, hi = start, start + 9
        for m in _BOUND.finditer(text):
            year = int(m["year"])
            if m["rel"].lower() in ("before", "until", "older than", "earlier than", "pre"):
                hi = year - 1
            else:
                lo = year + 1
        shown_years = [y for y in (self.catalog[i].year for i in state.shown if i in self.catalog) if y is not None]
        if lo is None and hi is None and _OLDER.search(text):
            reference = min(shown_years) if shown_years else (state.year_max or state.year_min)
            hi = reference - 1 if reference is not None else None
            if hi is not None and state.year_min is not None and hi - state.year_min >= MIN_SPAN:
                lo = state.year_min  # keep the other bound unless it leaves (almost) nothing
        elif lo is None and hi is None and _NEWER.search(text):
            reference = max(shown_years) if shown_years else (state.year_min or state.year_max)
            lo = reference + 1 if reference is not None else None
            if lo is not None and state.year_max is not None and state.year_max - lo >= MIN_SPAN:
                hi = state.year_max
        return lo, hi


EXTRACTION_PROMPT = (
    "Read the user's message to a movie recommender and answer with one JSON object with these keys: "
    '"liked_titles" (movies the user enjoyed), "disliked_titles" (movies the user did not enjoy), "genres" '
    '(genres wanted), "avoid_genres" (genres not wanted), "min_year" and "max_year" (numbers or null). Use '
    "[] or null when the message says nothing about a key. Answer with the JSON object only.")


def extraction_schema(genres: Sequence[str], *, max_items: int = 2, max_title: int = 60) -> dict[str, Any]:
    """The JSON schema of ``EXTRACTION_PROMPT``'s answer: genres from ``genres`` only, at most ``max_items`` per
    list and ``max_title`` characters per title, years as integers or null, compact (no free whitespace), so a
    constrained answer is short enough to finish within the token limit."""
    def listing(items: dict[str, Any]) -> dict[str, Any]:
        return {"type": "array", "items": items, "maxItems": max_items}

    title = {"type": "string", "maxLength": max_title}
    genre = {"enum": sorted(genres)}
    year = {"anyOf": [{"type": "integer", "minimum": 1880, "maximum": 2030}, {"type": "null"}]}
    properties = {"liked_titles": listing(title), "disliked_titles": listing(title), "genres": listing(genre),
                  "avoid_genres": listing(genre), "min_year": year, "max_year": year}
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False,
            "x-guidance": {"whitespace_flexible": False}}


class LLMExtractor:
    """Asks the model for the preference fields as JSON and keeps only what checks out (see module docstring);
    the rule-based reading is always merged in, so an unusable answer loses nothing. On a backend that follows
    JSON schemas (``can_schema``) and with ``constrain``, the answer is decoded under ``extraction_schema``, so
    it is valid JSON of the right shape whenever it finishes within ``max_new_tokens``."""

    def __init__(self, llm: LLM, catalog: ItemCatalog, *, max_new_tokens: int | None = None,
                 constrain: bool = True) -> None:
        self.llm = llm
        self.catalog = catalog
        self.rules = RuleExtractor(catalog)
        self.genres = {g.lower(): g for item in catalog for g in item.genres}
        self.schema = extraction_schema(sorted(set(self.genres.values()))) if constrain and llm.can_schema else None
        self.max_new_tokens = max_new_tokens or (160 if self.schema is not None else 96)
        self.n_unusable = 0

    def extract(self, message: str, state: Preferences) -> PreferenceUpdate:
        ruled = self.rules.extract(message, state)
        try:
            text = self.llm.generate([GenerationRequest(
                messages=({"role": "system", "content": EXTRACTION_PROMPT}, {"role": "user", "content": message}),
                max_new_tokens=self.max_new_tokens, temperature=0.0, json_schema=self.schema)])[0].text
        except LLMError as exc:
            self.n_unusable += 1
            return _with_note(ruled, f"language model unavailable ({exc}); rules only")
        parsed = first_json_object(text)
        if parsed is None:
            self.n_unusable += 1
            return _with_note(ruled, "the model's answer held no JSON object; rules only")
        checked, dropped = self._check(parsed)
        notes = (*ruled.notes, *(f"dropped from the model's answer: {d}" for d in dropped))
        return PreferenceUpdate(
            liked=_union(ruled.liked, tuple(i for i in checked["liked"] if i not in ruled.disliked)),
            disliked=_union(ruled.disliked, tuple(i for i in checked["disliked"] if i not in ruled.liked)),
            genres=_union(ruled.genres, tuple(g for g in checked["genres"] if g not in ruled.avoid_genres)),
            avoid_genres=_union(ruled.avoid_genres, tuple(g for g in checked["avoid"] if g not in ruled.genres)),
            year_min=ruled.year_min if ruled.clear_years else checked["min_year"],
            year_max=ruled.year_max if ruled.clear_years else checked["max_year"],
            clear_years=ruled.clear_years or checked["min_year"] is not None or checked["max_year"] is not None,
            wishes=ruled.wishes, unknown_titles=ruled.unknown_titles, others=ruled.others, source="llm+rules",
            notes=notes)

    def _check(self, raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        dropped: list[str] = []

        def titles(key: str) -> tuple[str, ...]:
            out = []
            for title in _strings(raw.get(key)):
                item = self.catalog.lookup(title)
                if item is None:
                    dropped.append(f"{key} {title!r} (not in the catalog)")
                else:
                    out.append(item.id)
            return tuple(out)

        def genre_list(key: str) -> tuple[str, ...]:
            out = []
            for genre in _strings(raw.get(key)):
                known = self.genres.get(genre.strip().lower())
                if known is None:
                    dropped.append(f"{key} {genre!r} (not a catalog genre)")
                else:
                    out.append(known)
            return tuple(out)

        def year(key: str) -> int | None:
            value = raw.get(key)
            if value is None:
                return None
            if isinstance(value, int | float) and 1880 <= int(value) <= 2030:
                return int(value)
            dropped.append(f"{key} {value!r} (not a plausible year)")
            return None

        return {"liked": titles("liked_titles"), "disliked": titles("disliked_titles"),
                "genres": genre_list("genres"), "avoid": genre_list("avoid_genres"),
                "min_year": year("min_year"), "max_year": year("max_year")}, dropped


def first_json_object(text: str) -> dict[str, Any] | None:
    """The first balanced ``{...}`` in ``text`` that parses as a JSON object (None when there is none)."""
    start = text.find("{")
    while start != -1:
        depth = 0
        for end in range(start, len(text)):
            if text[end] == "{":
                depth += 1
            elif text[end] == "}":
                depth -= 1
                if depth == 0:
                    try:
                        value = json.loads(text[start:end + 1])
                    except json.JSONDecodeError:
                        break
                    return value if isinstance(value, dict) else None
        start = text.find("{", start + 1)
    return None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, Sequence):
        return [v for v in value if isinstance(v, str) and v.strip()]
    return []


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*a, *b]))


def _with_note(update: PreferenceUpdate, note: str) -> PreferenceUpdate:
    from dataclasses import replace

    return replace(update, notes=(*update.notes, note))
