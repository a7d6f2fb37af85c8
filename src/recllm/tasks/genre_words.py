"""Genre words people use, for reading messages and checking explanations: catalog genres named by their own
names (plurals and adjectives included: "comedies", "animated") and by everyday words with one clear meaning
("funny" is Comedy, "scary" Horror, "cartoon" Animation, "for kids" Children's, "rom-com" Romance and Comedy,
"dystopian" Sci-Fi). Words without one clear genre ("feel-good", "light", "weird") are not here. Genres the
catalog lacks are never produced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

GENRE_WORDS: dict[str, tuple[str, ...]] = {
    "Action": ("action", "action-packed", "action packed", "explosions", "fights", "fight scenes", "shoot-em-up",
               "shoot em up"),
    "Adventure": ("adventure", "adventures", "adventurous", "swashbuckling", "quest"),
    "Animation": ("animation", "animated", "cartoon", "cartoons", "anime"),
    "Children's": ("children's", "childrens", "kids", "for kids", "for children", "kid-friendly", "kid friendly",
                   "family film", "family films", "family movie", "family movies", "family-friendly",
                   "family friendly", "whole family", "children"),
    "Comedy": ("comedy", "comedies", "comedic", "funny", "hilarious", "make me laugh", "laughs", "laugh",
               "humor", "humour", "humorous", "rom-com", "rom-coms", "romcom", "romcoms", "romantic comedy",
               "romantic comedies"),
    "Crime": ("crime", "crimes", "detective", "detectives", "gangster", "gangsters", "heist", "heists", "mobster",
              "mobsters", "mafia", "mob movie", "mob movies", "cop", "cops"),
    "Documentary": ("documentary", "documentaries", "docs", "docu", "docudrama"),
    "Drama": ("drama", "dramas", "dramatic", "sad", "tearjerker", "tearjerkers", "tear-jerker", "emotional",
              "weepie"),
    "Fantasy": ("fantasy", "fantasies", "magic", "magical", "wizard", "wizards", "dragon", "dragons", "fairy tale",
                "fairy tales", "fairytale", "fairytales"),
    "Film-Noir": ("film-noir", "film noir", "noir", "noirs"),
    "Horror": ("horror", "horrors", "scary", "creepy", "spooky", "frightening", "terrifying", "slasher",
               "slashers", "gore", "gory"),
    "Musical": ("musical", "musicals", "singing", "song and dance"),
    "Mystery": ("mystery", "mysteries", "whodunit", "whodunits", "whodunnit", "mysterious"),
    "Romance": ("romance", "romances", "romantic", "love story", "love stories", "rom-com", "rom-coms", "romcom",
                "romcoms", "romantic comedy", "romantic comedies"),
    "Sci-Fi": ("sci-fi", "sci fi", "scifi", "science fiction", "science-fiction", "space", "outer space", "aliens",
               "robots", "robot", "futuristic", "spaceships", "dystopian", "dystopia", "set in the future",
               "time travel"),
    "Thriller": ("thriller", "thrillers", "thriller-ish", "thrillerish", "suspense", "suspenseful", "tense",
                 "nail-biting", "nail biting", "nail-biter", "edge of my seat", "edge-of-your-seat"),
    "War": ("war", "war films", "war movies", "soldiers", "wwii", "ww2", "world war"),
    "Western": ("western", "westerns", "cowboy", "cowboys", "wild west"),
}
"""Catalog genre -> words that name it (MovieLens genre names; other catalogs match by their own names)."""


@dataclass(frozen=True)
class GenreMention:
    genre: str
    start: int
    end: int


class GenreReader:
    """Finds catalog genres named or described in text (see the module docstring)."""

    def __init__(self, genres: Iterable[str]) -> None:
        patterns: list[tuple[str, re.Pattern[str]]] = []
        for genre in sorted(set(genres)):
            words = {genre.lower(), *GENRE_WORDS.get(genre, ())}
            alts = "|".join(r"[\s-]*".join(re.escape(w) for w in re.split(r"[\s-]+", word))
                            for word in sorted(words, key=len, reverse=True))
            patterns.append((genre, re.compile(rf"(?<![A-Za-z0-9'])(?:{alts})(?![A-Za-z0-9])", re.IGNORECASE)))
        self.patterns = patterns

    def mentions(self, text: str) -> list[GenreMention]:
        """Every genre mention in ``text``, in order (one word may name two genres: "rom-com")."""
        found = [GenreMention(genre, m.start(), m.end()) for genre, pattern in self.patterns
                 for m in pattern.finditer(text)]
        return sorted(found, key=lambda g: (g.start, g.genre))

    def blank(self, text: str) -> str:
        """``text`` with every genre word blanked out (for reading what else it says)."""
        for _, pattern in self.patterns:
            text = pattern.sub(lambda m: " " * len(m.group(0)), text)
        return text
