"""Finding catalog titles, genres and years mentioned in free text (for checking what a model says)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property

from recllm.data.catalog import ItemCatalog, normalize_title

_MIN_TITLE = 4  # shorter titles ("Up", "It") are not searched for in prose
_TITLE_YEAR = re.compile(r"(?P<title>[A-Z0-9\"'][^()\n.!?]{0,80}?)\s*\((?P<year>\d{4})\)")
_YEAR = re.compile(r"(?<![0-9])(?P<year>(?:18|19|20)\d{2})(?P<s>'?s)?(?![0-9])")
_GENRE_ALIASES = {
    "sci-fi": ("sci-fi", "sci fi", "science fiction", "science-fiction"),
    "children's": ("children's", "childrens", "children", "kids"),
    "film-noir": ("film-noir", "film noir", "noir"),
}


def fold(text: str) -> str:
    """ASCII-fold ``text`` (accents dropped), keeping its case and, for ASCII text, its length."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


@dataclass(frozen=True)
class Mention:
    """A catalog item named in text: its id, the span in the folded text, and a year written after it."""

    item: str
    start: int
    end: int
    year: int | None = None


class TitleScanner:
    """Finds which catalog items, genres and years a text mentions.

    Titles are matched whole-word and case-insensitively (one-word titles only when capitalised, so "speed"
    is not read as the movie "Speed"); a longer match wins over a shorter one inside it ("Star Wars" inside
    "Return of the Jedi: Star Wars" is not counted twice). Titles shorter than 4 characters are not searched.
    """

    def __init__(self, catalog: ItemCatalog) -> None:
        self.catalog = catalog

    @cached_property
    def _patterns(self) -> list[tuple[re.Pattern[str], str, bool]]:
        out = []
        for item in self.catalog:
            seen: set[str] = set()
            for variant in (fold(item.display_title), normalize_title(item.title)):
                words = re.findall(r"[A-Za-z0-9]+", variant)
                key = " ".join(w.lower() for w in words)
                if len(key) < _MIN_TITLE or key in seen:
                    continue
                seen.add(key)
                body = r"[^A-Za-z0-9]{1,3}".join(re.escape(w) for w in words)
                out.append((re.compile(rf"(?<![A-Za-z0-9]){body}(?![A-Za-z0-9])", re.IGNORECASE), item.id,
                            len(words) == 1))
        return out

    @cached_property
    def _genres(self) -> dict[str, re.Pattern[str]]:
        genres = sorted({g for item in self.catalog for g in item.genres})
        out = {}
        for genre in genres:
            aliases = _GENRE_ALIASES.get(genre.lower(), (genre.lower(),))
            alts = "|".join(r"[^A-Za-z0-9]{1,2}".join(re.escape(w) for w in re.findall(r"[A-Za-z0-9']+", a))
                            for a in aliases)
            out[genre] = re.compile(rf"(?<![A-Za-z0-9])(?:{alts})(?![A-Za-z0-9])", re.IGNORECASE)
        return out

    def titles(self, text: str) -> list[Mention]:
        """Catalog items named in ``text``, in order of appearance, overlapping shorter matches dropped."""
        text = fold(text)
        found: list[Mention] = []
        for pattern, item, single in self._patterns:
            for m in pattern.finditer(text):
                if single and not m.group(0)[0].isupper():
                    continue
                after = re.match(r"\s*\((\d{4})\)", text[m.end():])
                found.append(Mention(item, m.start(), m.end() + (after.end() if after else 0),
                                     int(after.group(1)) if after else None))
        found.sort(key=lambda x: (-(x.end - x.start), x.start))
        kept: list[Mention] = []
        for mention in found:
            if all(mention.end <= k.start or mention.start >= k.end for k in kept):
                kept.append(mention)
        return sorted(kept, key=lambda x: x.start)

    def unknown_titles(self, text: str) -> list[str]:
        """"Title (Year)" references in ``text`` that name no catalog item."""
        text = fold(text)
        known = self.titles(text)
        out = []
        for m in _TITLE_YEAR.finditer(text):
            if any(k.start < m.end() and m.start() < k.end for k in known):
                continue
            if self.catalog.lookup(f"{m['title']} ({m['year']})") is None:
                out.append(m.group(0).strip())
        return out

    def genres(self, text: str) -> list[str]:
        """Catalog genres named in ``text`` (aliases such as "science fiction" included)."""
        text = fold(text)
        return [genre for genre, pattern in self._genres.items() if pattern.search(text)]

    def without_genres(self, text: str) -> str:
        """``text`` (folded) with every genre mention blanked out."""
        text = fold(text)
        for pattern in self._genres.values():
            text = pattern.sub(" ", text)
        return text

    @staticmethod
    def years(text: str) -> list[tuple[int, bool]]:
        """Years (and decades, flagged True: "1980s") written in ``text``."""
        return [(int(m["year"]), bool(m["s"])) for m in _YEAR.finditer(text)]
