"""ItemCatalog: item id -> title and text facts, prompt-ready descriptions and fuzzy title lookup."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from recllm.data.search import TitleSearch
from recllm.errors import DataError, UnknownIdError

_ARTICLE_SUFFIX = re.compile(r"^(?P<body>.*), (?P<article>the|a|an|les|la|le|il|das|der|die|el|l')$",
                             re.IGNORECASE)
_LEADING_ARTICLES = frozenset({"the", "a", "an"})
_YEAR_SUFFIX = re.compile(r"\s*\((?P<year>\d{4})\)\s*$")
YEAR_BONUS = 0.25
"""Added to a search match whose year is the year written in the query."""
_QUERY_YEAR = re.compile(r"\(?(?<![0-9])(?P<year>(?:18|19|20)[0-9]{2})(?![0-9])\)?")


@dataclass(frozen=True)
class Item:
    """Facts about one item. ``extra`` holds any further text fields (director, description, ...)."""

    id: str
    title: str
    year: int | None = None
    genres: tuple[str, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def display_title(self) -> str:
        """Title with a trailing article moved to the front ("Usual Suspects, The" -> "The Usual ...")."""
        return natural_title(self.title)

    def label(self) -> str:
        """Title with year, as people write it: "The Usual Suspects (1995)"."""
        return f"{self.display_title} ({self.year})" if self.year else self.display_title


def natural_title(title: str) -> str:
    match = _ARTICLE_SUFFIX.match(title.strip())
    if not match:
        return title.strip()
    return f"{match['article']} {match['body']}"


def normalize_title(text: str) -> str:
    """Canonical form for matching: natural article order, no year, no accents or punctuation, lowercase."""
    text = _YEAR_SUFFIX.sub("", text.strip())
    text = natural_title(text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9 ]+", " ", text.lower())
    words = text.split()
    if len(words) > 1 and words[0] in _LEADING_ARTICLES:  # "The Usual Suspects" ~ "Usual Suspects"
        words = words[1:]
    return " ".join(words)


class ItemCatalog:
    """Immutable collection of ``Item`` keyed by external id, in insertion order."""

    def __init__(self, items: Iterable[Item]) -> None:
        self._items: dict[str, Item] = {}
        for item in items:
            if item.id in self._items:
                raise DataError(f"duplicate item id '{item.id}' in catalog", field="item")
            self._items[item.id] = item

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items.values())

    def __contains__(self, item_id: object) -> bool:
        return str(item_id) in self._items

    def __getitem__(self, item_id: object) -> Item:
        try:
            return self._items[str(item_id)]
        except KeyError:
            raise UnknownIdError(f"unknown item id '{item_id}' (not in the catalog)") from None

    def get(self, item_id: object) -> Item | None:
        return self._items.get(str(item_id))

    @property
    def ids(self) -> list[str]:
        return list(self._items)

    def title(self, item_id: object) -> str:
        item = self.get(item_id)
        return item.label() if item is not None else str(item_id)

    def describe(self, item_id: object) -> str:
        """One line of facts for a prompt: title (year); genres; extra fields."""
        item = self[item_id]
        parts = [item.label()]
        if item.genres:
            parts.append("genres: " + ", ".join(item.genres))
        parts.extend(f"{key}: {value}" for key, value in item.extra.items() if value)
        return "; ".join(parts)

    @cached_property
    def _by_normalized(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        for item in self:
            index.setdefault(normalize_title(item.title), []).append(item.id)
        return index

    @cached_property
    def _search(self) -> TitleSearch:
        return TitleSearch((item.id, normalize_title(item.title)) for item in self)

    def search(self, query: str, *, limit: int = 10) -> list[Item]:
        """Items for what a person typed into a search box, best first: whole words, word starts, any case,
        articles left out, small typos (``recllm.data.search``); a year in the query ("heat 1995") puts that
        year's titles first."""
        year_match = _QUERY_YEAR.search(query)
        year = int(year_match["year"]) if year_match else None
        words = _QUERY_YEAR.sub(" ", query) if year is not None else query
        key = normalize_title(words) if words.strip() else ""
        if not key:
            return []
        found = self._search.search(key, limit=len(self) if year is not None else limit)
        if year is not None:  # the year lifts a title above others that match as well or a little better
            found.sort(key=lambda f: -(f[1] + YEAR_BONUS * (self._items[f[0]].year == year)))
        return [self._items[item_id] for item_id, _ in found[:limit]]

    def lookup(self, title: str, *, cutoff: float = 0.85) -> Item | None:
        """The item whose title best matches ``title`` (year optional), or None below ``cutoff``.

        An exact normalised match wins; a year in the query breaks ties between remakes. Otherwise the
        closest title by sequence similarity is taken if its ratio is at least ``cutoff``.
        """
        matches = self.lookup_all(title, cutoff=cutoff, limit=1)
        return matches[0] if matches else None

    def lookup_all(self, title: str, *, cutoff: float = 0.6, limit: int = 10) -> list[Item]:
        """Items ranked by how well their titles match ``title``; exact normalised matches first."""
        year_match = _YEAR_SUFFIX.search(title)
        year = int(year_match["year"]) if year_match else None
        key = normalize_title(title)
        if not key:
            return []
        exact = [self._items[i] for i in self._by_normalized.get(key, [])]
        if exact:
            exact.sort(key=lambda it: (year is not None and it.year != year, it.id))
            if year is not None and exact[0].year == year:
                return exact[:limit]
            if year is None:
                return exact[:limit]
        close = difflib.get_close_matches(key, self._by_normalized.keys(), n=limit, cutoff=cutoff)
        found: list[Item] = list(exact)
        for norm in close:
            for item_id in self._by_normalized[norm]:
                item = self._items[item_id]
                if item not in found:
                    found.append(item)
        if year is not None:
            found.sort(key=lambda it: it.year != year)  # stable: keeps similarity order otherwise
        return found[:limit]
