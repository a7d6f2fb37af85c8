"""Reading a year range from one clause of a chat message, the way people state it.

Bounds keep their direction under negation ("nothing before 1990" is a lower bound, "not after 1995" an upper
one) and their inclusiveness ("before 1990" ends in 1989, "until 1990" in 1990); ranges ("between 1985 and
1995", "1985-1995", "from the 70s to the 90s"), decades with "early", "mid" and "late", a single year ("from
1995"), words relative to the catalog ("recent", "the last 10 years of the catalog", "old movies") and
critiques relative to the list just shown ("older ones", "more recent") are read. A negated decade ("not the
80s") states an exclusion that a year range cannot hold, so it sets no bound and says so in a note.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_Y = r"(?:18|19|20)\d{2}"
_DECADE_BODY = r"(?:(?:19|20)?\d0'?s|(?:twenties|thirties|forties|fifties|sixties|seventies|eighties|nineties))"
_DECADE = re.compile(rf"(?<![0-9A-Za-z])(?:(?P<part>early|mid|middle|late)[\s-]*)?'?(?P<decade>{_DECADE_BODY})"
                     r"(?![A-Za-z0-9])", re.IGNORECASE)
_WORD_DECADES = {"twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950, "sixties": 1960,
                 "seventies": 1970, "eighties": 1980, "nineties": 1990}
_RANGE = re.compile(rf"(?:\bbetween\s+(?:the\s+)?|\bfrom\s+(?:the\s+)?)?(?P<a>{_Y}|{_DECADE_BODY})\s*"
                    r"(?:-|–|—|\bto\b|\band\b|\bor\b|\buntil\b|\btill\b|\bthrough\b|\bthru\b|\bup (?:to|until)\b)"
                    r"\s*(?:the\s+)?"
                    rf"(?P<b>{_Y}|{_DECADE_BODY})(?![0-9])", re.IGNORECASE)
# relation words and the bound each one sets: (side, offset) with side "max"/"min" and year + offset
_RELATIONS: dict[str, tuple[str, int]] = {
    "before": ("max", -1), "older than": ("max", -1), "earlier than": ("max", -1), "pre": ("max", -1),
    "prior to": ("max", -1), "until": ("max", 0), "till": ("max", 0), "up to": ("max", 0), "up until": ("max", 0),
    "no later than": ("max", 0), "through": ("max", 0), "after": ("min", 1), "newer than": ("min", 1),
    "later than": ("min", 1), "post": ("min", 1), "more recent than": ("min", 1), "since": ("min", 0),
    "no earlier than": ("min", 0), "starting": ("min", 0), "starting from": ("min", 0),
}
_BOUND = re.compile(r"(?<![A-Za-z])(?P<rel>" + "|".join(sorted(map(re.escape, _RELATIONS), key=len, reverse=True))
                    + rf")[\s-]*(?:the\s+year\s+)?(?P<year>{_Y})(?![0-9])", re.IGNORECASE)
_TRAILING = re.compile(rf"(?<![0-9])(?P<year>{_Y})\s*(?P<rel>or (?:later|newer|after|earlier|before|older)|"
                       r"on(?:wards?)?\b|and (?:later|after|newer|up|earlier|before|older)|\+)", re.IGNORECASE)
_FROM_ON = re.compile(rf"\bfrom\s+(?P<year>{_Y})\s+(?:on|onwards?)\b", re.IGNORECASE)
_SINGLE = re.compile(rf"(?<![0-9(])(?P<year>{_Y})(?!['0-9]|s\b|\))", re.IGNORECASE)
_NEGATION = re.compile(r"\b(?:no|not|nothing|none|never|nor|without|avoid|exclude|skip|don'?t|do not|doesn'?t|"
                       r"isn'?t|aren'?t|nobody)\b", re.IGNORECASE)
_LAST_YEARS = re.compile(r"\b(?:last|past|latest)\s+(?P<n>\d{1,2}|two|three|four|five|six|seven|eight|nine|ten|"
                         r"fifteen|twenty)\s+years\b", re.IGNORECASE)
_LAST_DECADE = re.compile(r"\b(?:last|past|latest)\s+decade\b", re.IGNORECASE)
_RECENT = re.compile(r"(?<!more )(?<!less )(?<!too )(?<!so )\b(?:recent|latest|new releases?|newest|modern)\b",
                     re.IGNORECASE)
_OLD = re.compile(r"(?<!an )(?<!the )\b(?:old (?:movies|films|ones|stuff|classics)|oldies|classics|"
                  r"golden age)\b", re.IGNORECASE)
_OLDER = re.compile(r"\b(?:older|earlier|less recent|not so new|from before)\b", re.IGNORECASE)
_NEWER = re.compile(r"\b(?:newer|more recent|later ones|more modern|less old)\b", re.IGNORECASE)
_NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
                 "fifteen": 15, "twenty": 20}

RECENT_SPAN = 5
""""Recent" means the last this many years of the catalog."""
OLD_BEFORE = 1970
""""Old movies" and "classics" (with no list shown) mean films before this year."""
MIN_SPAN = 4
"""A critique ("older", "newer") keeps the range's other bound only when at least this many years remain."""
NEGATION_WINDOW = 5
"""A negation word this many words or fewer before a bound turns it around ("nothing before 1990")."""


@dataclass(frozen=True)
class YearReading:
    """The bounds one clause states (None: not stated) and notes on what could not be expressed."""

    year_min: int | None = None
    year_max: int | None = None
    notes: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return self.year_min is not None or self.year_max is not None


class YearReader:
    """Reads year bounds; ``catalog_years`` (the years the catalog holds) anchor "recent" and "the last N
    years"."""

    def __init__(self, catalog_years: Sequence[int]) -> None:
        self.newest = max(catalog_years) if catalog_years else None

    def read(self, clause: str, *, shown_years: Sequence[int] = (), state_min: int | None = None,
             state_max: int | None = None) -> YearReading:
        """The bounds ``clause`` states; ``shown_years`` are the years of the list just shown and ``state_*``
        the range in force, for critiques ("older ones")."""
        lo: int | None = None
        hi: int | None = None
        notes: list[str] = []
        taken: list[tuple[int, int]] = []

        def free(m: re.Match[str]) -> bool:
            return all(m.end() <= a or m.start() >= b for a, b in taken)

        for m in _RANGE.finditer(clause):
            a, b = _span(m["a"]), _span(m["b"])
            if a is None or b is None:
                continue
            taken.append(m.span())
            if _negated(clause, m.start(), window=2):  # "not 1980 to 1985": an exclusion, like a negated decade
                notes.append(f"'{m.group(0).strip()}' excluded: a year range cannot leave out a span, so no bound "
                             "was set")
                continue
            lo, hi = min(a[0], b[0]), max(a[1], b[1])
        for m in _BOUND.finditer(clause):
            if not free(m):
                continue
            side, offset = _RELATIONS[m["rel"].lower()]
            year = int(m["year"])
            if _negated(clause, m.start()):  # "not before 1990": from 1990 on; "nothing after 1995": to 1995
                side, offset = ("min", 0) if side == "max" else ("max", 0)
            if side == "max":
                hi = year + offset
            else:
                lo = year + offset
            taken.append(m.span())
        for m in _FROM_ON.finditer(clause):
            if free(m):
                lo = int(m["year"])
                taken.append(m.span())
        for m in _TRAILING.finditer(clause):
            if not free(m):
                continue
            rel = m["rel"].lower()
            if any(w in rel for w in ("earlier", "before", "older")):
                hi = int(m["year"])
            else:
                lo = int(m["year"])
            taken.append(m.span())
        for m in _DECADE.finditer(clause):
            if not free(m):
                continue
            taken.append(m.span())
            span = _span(m["decade"], m["part"])
            if span is None:
                continue
            if _negated(clause, m.start(), window=3):
                notes.append(f"'{m.group(0).strip()}' excluded: a year range cannot leave out a decade, so no "
                             "bound was set")
                continue
            lo, hi = span
        for m in _SINGLE.finditer(clause):
            if free(m):
                lo = hi = int(m["year"])
                taken.append(m.span())
        if lo is None and hi is None and self.newest is not None:
            if (last := _LAST_YEARS.search(clause)) is not None:
                n = _NUMBER_WORDS.get(last["n"].lower()) or int(last["n"])
                lo = self.newest - n + 1
            elif _LAST_DECADE.search(clause):
                lo = self.newest - 9
            elif (recent := _RECENT.search(clause)) is not None and not _negated(clause, recent.start()):
                lo = self.newest - RECENT_SPAN + 1
        if lo is None and hi is None:
            lo, hi = self._critique(clause, shown_years, state_min, state_max)
        if lo is None and hi is None and not shown_years and _OLD.search(clause):
            hi = OLD_BEFORE - 1
        return YearReading(lo, hi, tuple(notes))

    @staticmethod
    def _critique(clause: str, shown: Sequence[int], state_min: int | None, state_max: int | None
                  ) -> tuple[int | None, int | None]:
        lo = hi = None
        if _OLDER.search(clause):
            reference = min(shown) if shown else (state_max or state_min)
            hi = reference - 1 if reference is not None else None
            if hi is not None and state_min is not None and hi - state_min >= MIN_SPAN:
                lo = state_min  # keep the other bound unless it leaves (almost) nothing
        elif _NEWER.search(clause):
            reference = max(shown) if shown else (state_min or state_max)
            lo = reference + 1 if reference is not None else None
            if lo is not None and state_max is not None and state_max - lo >= MIN_SPAN:
                hi = state_max
        return lo, hi


def _negated(clause: str, start: int, *, window: int = NEGATION_WINDOW) -> bool:
    """Whether a negation word is among the ``window`` words before ``start``."""
    words = clause[:start].split()[-window:]
    return bool(_NEGATION.search(" ".join(words)))


def _span(decade_or_year: str, part: str | None = None) -> tuple[int, int] | None:
    """The years a decade ("80s", "1980s", "eighties", with "early"/"mid"/"late") or a year covers."""
    text = decade_or_year.lower().strip("'")
    if re.fullmatch(_Y, text):
        return int(text), int(text)
    if text in _WORD_DECADES:
        start = _WORD_DECADES[text]
    else:
        m = re.fullmatch(r"(?P<century>19|20)?(?P<decade>\d)0'?s", text)
        if m is None:
            return None
        century = int(m["century"]) * 100 if m["century"] else 1900
        start = century + int(m["decade"]) * 10
    part = (part or "").lower()
    if part == "early":
        return start, start + 4
    if part in ("mid", "middle"):
        return start + 3, start + 7
    if part == "late":
        return start + 5, start + 9
    return start, start + 9
