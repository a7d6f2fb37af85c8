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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from rapidfuzz import fuzz

from recllm.chat.cues import negative
from recllm.chat.state import Preferences, PreferenceUpdate
from recllm.chat.title_reader import MATCH_RATIO, QUOTED, TitleReader
from recllm.chat.years import YearReader
from recllm.data.catalog import ItemCatalog, normalize_title
from recllm.llm.base import LLM, GenerationRequest, LLMError
from recllm.tasks.genre_words import GenreReader
from recllm.tasks.titles import fold

log = logging.getLogger(__name__)

_CLAUSE = re.compile(r"(?:[;!?\n]|(?<!\bMrs)(?<!\bMr)(?<!\bDr)(?<!\bSt)(?<!\bvs)(?<!\bJr)(?<!\b[A-Za-z])\.)+"
                     r"|,|\s[-–—]+\s|\bbut\b|\bthough\b|\bhowever\b|\bwhereas\b|\bwhile\b", re.IGNORECASE)
_SEEN = re.compile(r"\b(?:already (?:seen|watched|saw)|(?:i'?ve|have) (?:already )?(?:seen|watched)|seen (?:it|that)|"
                   r"watched (?:it|that)|(?:seen|watched|saw)\b.*\balready)\b", re.IGNORECASE)
_ORDINALS = {"first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2, "fourth": 3, "4th": 3,
             "fifth": 4, "5th": 4, "sixth": 5, "6th": 5, "seventh": 6, "7th": 6, "eighth": 7, "8th": 7,
             "ninth": 8, "9th": 8, "tenth": 9, "10th": 9, "last": -1}
_ORDINAL_WORDS = "|".join(_ORDINALS)
_COUNTS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
           "ten": 10, "2": 2, "3": 3, "4": 4, "5": 5}
_FIRST_N = re.compile(r"\b(?:the\s+)?(?P<side>first|top|last)\s+(?P<n>two|three|four|five|[2-5])\b", re.IGNORECASE)
_ORDINAL = re.compile(r"\b(?:the\s+)?(?P<word>" + "|".join([*_ORDINALS, "middle"])
                      + r")(?:\s+(?:one|movie|film|suggestion|pick|option))?\b"
                      r"|(?:#|\bnumber\s+|\bno\.\s*|\boption\s+|\bpick\s+|\bsuggestion\s+)"
                      r"(?P<number>\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten)\b", re.IGNORECASE)
_OTHERS = re.compile(r"\b(?:something else|other ones|others|different ones|anything else|more suggestions|"
                     r"show me more|more of them|next ones)\b", re.IGNORECASE)
_WISH = re.compile(r"\b(?:want|looking for|in the mood|something|feel like|wish|prefer|would like)\b", re.IGNORECASE)
_NEGATIVE_CLAUSE = re.compile(r"\b(?:not|no|never|without|avoid|nothing|none|hate[ds]?|dislike[ds]?|didn'?t|"
                              r"don'?t|doesn'?t|wasn'?t|isn'?t)\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z][a-z'-]*")
_FILLER_WORDS = """
a an the and or of to for in on at with about from by me my i i'm im i'd i'll i've we us you it its this that
these those than between
some something anything any one ones movie movies film films show shows watch watching see seeing
want wanna looking look mood feel like would prefer wish please maybe kind sort bit really very just
more less most least again also too please give get find recommend suggestions suggestion tonight today
good great nice new old older newer recent classic era decade year years period only ish
"""
_FILLER = frozenset(_FILLER_WORDS.split())


class RuleExtractor:
    """Deterministic reading of a message against the catalog (see the module docstring)."""

    def __init__(self, catalog: ItemCatalog, popularity: Mapping[str, float] | None = None) -> None:
        """``popularity`` (item id -> how often watched) picks among versions of a title named without a year."""
        self.catalog = catalog
        self.genre_reader = GenreReader({g for item in catalog for g in item.genres if g.lower() != "unknown"})
        self.titles = TitleReader(catalog, popularity, other_words=self._genre_words)
        self.scanner = self.titles.scanner
        self.years = YearReader([item.year for item in catalog if item.year is not None])

    def extract(self, message: str, state: Preferences) -> PreferenceUpdate:
        liked: list[str] = []
        disliked: list[str] = []
        genres: list[str] = []
        avoid: list[str] = []
        year_min = year_max = None
        clear_years = False
        notes: list[str] = []
        wish_phrases: list[str] = []
        unknown: list[str] = []
        text = fold(" ".join(message.split()))
        shown_years = [y for y in (self.catalog[i].year for i in state.shown if i in self.catalog) if y is not None]
        clauses = [c.strip().replace("\x00", ",") for c in _CLAUSE.split(self._protect(text))]
        clauses = [c for c in clauses if c]
        inherited: bool | None = None  # the polarity of the last clause that named titles
        for number, clause in enumerate(clauses):
            seen = bool(_SEEN.search(clause))
            following = clauses[number + 1] if number + 1 < len(clauses) else ""
            named, missing = self.titles.read(clause, following)
            unknown += missing
            own_cue = self.titles.has_cue(clause)
            for mention in named:
                if seen:
                    bad = True
                elif mention.negative is not None:
                    bad = mention.negative
                elif not own_cue and inherited is not None and _only_titles(clause, named):
                    bad = inherited  # "Already seen Toy Story, Babe and Fly Away Home": the list goes on
                else:
                    bad = negative(clause, mention.start, mention.end)
                (disliked if bad else liked).append(mention.item)
            if named:
                inherited = disliked[-1] == named[-1].item if disliked else False
            rest = clause
            for mention in sorted(named, key=lambda m: -m.start):
                rest = rest[:mention.start] + " " * (mention.end - mention.start) + rest[mention.end:]
            for title in missing:
                rest = re.sub(re.escape(title), lambda m: " " * len(m.group(0)), rest, flags=re.IGNORECASE)
            for genre in self.genre_reader.mentions(rest):
                (avoid if negative(rest, genre.start, genre.end) else genres).append(genre.genre)
            for index, start, end in ordinal_references(rest, len(state.shown)):
                if not state.shown:
                    notes.append("a reference to a list item, but no list was shown yet")
                    continue
                if -len(state.shown) <= index < len(state.shown):
                    bad = seen or negative(rest, start, end)
                    (disliked if bad else liked).append(state.shown[index])
            if _WISH.search(clause) and not _NEGATIVE_CLAUSE.search(clause):
                wish_phrases.append(self._wish(rest))
            years = self.years.read(self.genre_reader.blank(rest), shown_years=shown_years,
                                    state_min=state.year_min, state_max=state.year_max)
            notes += years.notes
            if years.found:
                clear_years = True
                year_min = years.year_min if years.year_min is not None else year_min
                year_max = years.year_max if years.year_max is not None else year_max
        liked = [i for i in liked if i not in disliked]
        genres = [g for g in genres if g not in avoid]
        wishes = tuple(dict.fromkeys(w for w in wish_phrases if w))
        return PreferenceUpdate(others=bool(_OTHERS.search(text)),
                                liked=tuple(dict.fromkeys(liked)), disliked=tuple(dict.fromkeys(disliked)),
                                genres=tuple(dict.fromkeys(genres)), avoid_genres=tuple(dict.fromkeys(avoid)),
                                year_min=year_min, year_max=year_max, clear_years=clear_years, wishes=wishes,
                                unknown_titles=tuple(dict.fromkeys(unknown)), notes=tuple(dict.fromkeys(notes)))

    def _genre_words(self, name: str) -> bool:
        """Whether ``name`` is genre words and filler only ("horror", "a good heist"): not a title."""
        if not self.genre_reader.mentions(name):
            return False
        return all(w in _FILLER for w in _WORD.findall(self.genre_reader.blank(name).lower()))

    def _protect(self, text: str) -> str:
        """Commas inside quoted or catalog titles ("The Good, the Bad and the Ugly") do not split clauses."""
        spans = [m.span() for m in QUOTED.finditer(text)]
        spans += [(m.start, m.end) for m in self.titles.scanner.titles(text)]
        chars = list(text)
        for start, end in spans:
            for index in range(start, end):
                if chars[index] in ",.;":
                    chars[index] = "\x00" if chars[index] == "," else chars[index]
        return "".join(chars)

    def _wish(self, rest: str) -> str:
        """The free-text part of a wishing clause once titles, genres, years and filler words are gone
        ("" when nothing is left): "something with space battles" gives "space battles"."""
        rest = re.sub(r"\d+'?s?", " ", self.scanner.without_genres(rest)).lower()  # mood words stay: "space"
        words = [w for w in _WORD.findall(rest) if len(w) > 2 and w not in _FILLER and w not in _ORDINALS
                 and not _NEGATIVE_CLAUSE.fullmatch(w) and w not in _DECADE_WORDS]
        return " ".join(words)

def ordinal_references(text: str, shown: int) -> list[tuple[int, int, int]]:
    """``(index into the shown list, start, end)`` of each reference ("the second one", "#3", "option 2",
    "number three", "the first two", "the middle one"); negative indices count from the end; ``shown`` is
    the length of the list shown."""
    out = []
    taken: list[tuple[int, int]] = []
    for m in _FIRST_N.finditer(text):
        n = _COUNTS[m["n"].lower()]
        indices = range(n) if m["side"].lower() in ("first", "top") else range(-n, 0)
        out += [(i, m.start(), m.end()) for i in indices]
        taken.append(m.span())
    for m in _ORDINAL.finditer(text):
        if any(not (m.end() <= a or m.start() >= b) for a, b in taken):
            continue
        if m["word"]:
            word = m["word"].lower()
            spoken = m.group(0).lower().strip()
            paired = re.search(rf"\b(?:{_ORDINAL_WORDS})\s*(?:,|and|or|&)\s*(?:the\s+)?{re.escape(word)}\b|"
                               rf"\b{re.escape(word)}\s*(?:,|and|or|&)\s*(?:the\s+)?(?:{_ORDINAL_WORDS})\b",
                               text, re.IGNORECASE)
            pointed = spoken.startswith("the ") or " " in spoken or word[0].isdigit() or paired is not None or \
                text.strip(" .!?").lower() == spoken
            if not pointed or re.search(r"\bthan\s*$", text[:m.start()], re.IGNORECASE) or \
                    re.match(r"\s+(?:decade|\d|years?|time|few|couple|night|week|month|weekend)", text[m.end():]):
                continue  # "up last night", "better than the first", "first, something funny": no list reference
            if word == "middle":
                if shown % 2 == 1:
                    out.append((shown // 2, m.start(), m.end()))
                continue
            out.append((_ORDINALS[word], m.start(), m.end()))
        elif m["number"]:
            number = int(m["number"]) if m["number"].isdigit() else _COUNTS.get(m["number"].lower(), 0)
            if 1 <= number <= 20:
                out.append((number - 1, m.start(), m.end()))
    return out


def _only_titles(clause: str, named: Sequence[Any]) -> bool:
    """Whether ``clause`` holds nothing but the titles in ``named`` and connectors."""
    rest = clause
    for mention in sorted(named, key=lambda m: -m.start):
        rest = rest[:mention.start] + " " + rest[mention.end:]
    return not re.sub(r"\b(?:and|or|also|plus|too|as well)\b|\W", "", rest, flags=re.IGNORECASE)


_DECADE_WORDS = frozenset({"twenties", "thirties", "forties", "fifties", "sixties", "seventies", "eighties",
                           "nineties", "early", "mid", "late", "recent", "latest", "catalog", "last", "past"})


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
                 constrain: bool = True, rules: RuleExtractor | None = None) -> None:
        """``rules``: the rule reader to merge with (built from ``catalog`` when not given)."""
        self.llm = llm
        self.catalog = catalog
        self.rules = rules or RuleExtractor(catalog)
        self.genres = {g.lower(): g for item in catalog for g in item.genres}
        self.schema = extraction_schema(sorted(set(self.genres.values()))) if constrain and llm.can_schema else None
        self.max_new_tokens = max_new_tokens or (160 if self.schema is not None else 96)
        self.n_unusable = 0

    def extract(self, message: str, state: Preferences) -> PreferenceUpdate:
        """The rules' reading, with the model's checked answer filling only the fields the rules left empty, and
        only with values the message holds evidence for (a title written in it, a genre named or described in
        it, a year or its decade written in it): a small model otherwise fills empty fields with guesses."""
        ruled = self.rules.extract(message, state)
        modelled = self.read_model(message)
        if modelled.source != "llm":
            return _with_note(ruled, *modelled.notes)
        said = fold(message)
        named_genres = {m.genre for m in self.rules.genre_reader.mentions(said)}

        def fill(rules: tuple[str, ...], model: tuple[str, ...], other: tuple[str, ...],
                 evident: Callable[[str], bool]) -> tuple[str, ...]:
            return rules or tuple(v for v in model if v not in other and evident(v))

        def any_title(_: str) -> bool:
            return True  # read_model keeps only titles the message writes

        years_evident = all(year is None or _year_written(year, said)
                            for year in (modelled.year_min, modelled.year_max))
        years = ruled.clear_years or not modelled.clear_years or not years_evident
        return PreferenceUpdate(
            liked=fill(ruled.liked, modelled.liked, ruled.disliked, any_title),
            disliked=fill(ruled.disliked, modelled.disliked, ruled.liked, any_title),
            genres=fill(ruled.genres, modelled.genres, ruled.avoid_genres, named_genres.__contains__),
            avoid_genres=fill(ruled.avoid_genres, modelled.avoid_genres, ruled.genres, named_genres.__contains__),
            year_min=ruled.year_min if years else modelled.year_min,
            year_max=ruled.year_max if years else modelled.year_max,
            clear_years=ruled.clear_years or (modelled.clear_years and years_evident), wishes=ruled.wishes,
            unknown_titles=ruled.unknown_titles, others=ruled.others, source="llm+rules",
            notes=(*ruled.notes, *modelled.notes))

    def read_model(self, message: str) -> PreferenceUpdate:
        """The model's reading alone, checked against the catalog (``source`` "llm"); when the model is down or
        its answer unusable, an empty update with ``source`` "rules" and a note saying why."""
        try:
            text = self.llm.generate([GenerationRequest(
                messages=({"role": "system", "content": EXTRACTION_PROMPT}, {"role": "user", "content": message}),
                max_new_tokens=self.max_new_tokens, temperature=0.0, json_schema=self.schema)])[0].text
        except LLMError as exc:
            self.n_unusable += 1
            return PreferenceUpdate(notes=(f"language model unavailable ({exc}); rules only",))
        parsed = first_json_object(text)
        if parsed is None:
            self.n_unusable += 1
            return PreferenceUpdate(notes=("the model's answer held no JSON object; rules only",))
        checked, dropped = self._check(parsed, message)
        years = checked["min_year"] is not None or checked["max_year"] is not None
        return PreferenceUpdate(liked=checked["liked"], disliked=tuple(i for i in checked["disliked"]
                                                                       if i not in checked["liked"]),
                                genres=checked["genres"], avoid_genres=tuple(g for g in checked["avoid"]
                                                                             if g not in checked["genres"]),
                                year_min=checked["min_year"], year_max=checked["max_year"], clear_years=years,
                                source="llm", notes=tuple(f"dropped from the model's answer: {d}" for d in dropped))

    def _check(self, raw: dict[str, Any], message: str) -> tuple[dict[str, Any], list[str]]:
        """The answer's fields that resolve in the catalog (titles also written in the message), and what was
        dropped and why."""
        dropped: list[str] = []
        said = normalize_title(fold(message))

        def titles(key: str) -> tuple[str, ...]:
            out = []
            for title in _strings(raw.get(key)):
                item = self.catalog.lookup(title)
                if item is None:
                    dropped.append(f"{key} {title!r} (not in the catalog)")
                elif fuzz.partial_ratio(normalize_title(item.title), said) < MATCH_RATIO:
                    dropped.append(f"{key} {title!r} (the message does not name it)")
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


def _year_written(year: int, text: str) -> bool:
    """Whether ``year``, or the decade holding it, is written in ``text`` ("1985", "85", "the 80s", "eighties")."""
    decade = year // 10 % 10
    words = {"2": "twenties", "3": "thirties", "4": "forties", "5": "fifties", "6": "sixties", "7": "seventies",
             "8": "eighties", "9": "nineties"}
    return bool(re.search(rf"(?<![0-9]){year}(?![0-9])|(?<![0-9])'?{year % 100:02d}(?![0-9])|{decade}0'?s\b",
                          text)) or words.get(str(decade), "#") in text.lower()


def _with_note(update: PreferenceUpdate, *notes: str) -> PreferenceUpdate:
    return replace(update, notes=(*update.notes, *notes))
