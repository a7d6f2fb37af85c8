"""Genre words people use and whether a mention is wanted or not, for the chat's rule reader.

``GenreReader`` finds catalog genres named in a clause by their own names (plurals and adjectives included:
"comedies", "animated") and by everyday words with one clear meaning ("funny" is Comedy, "scary" Horror,
"cartoon" Animation, "for kids" Children's, "rom-com" Romance and Comedy). Words without one clear genre
("feel-good", "light", "weird") are left to the free-text wishes. Genres the catalog lacks are never produced.

``negative`` decides the polarity of a mention from the words around it: a negation before it ("no", "not",
"without", "hate", "instead of", "don't like") counts unless a positive cue comes after that negation ("I hate
horror and love comedy"); a verdict after it ("Heat was boring", "horror is not for me") counts too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_WORDS: dict[str, tuple[str, ...]] = {
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
               "robots", "robot", "futuristic", "spaceships"),
    "Thriller": ("thriller", "thrillers", "thriller-ish", "thrillerish", "suspense", "suspenseful", "tense",
                 "nail-biting", "nail biting", "nail-biter", "edge of my seat", "edge-of-your-seat"),
    "War": ("war", "war films", "war movies", "soldiers", "wwii", "ww2", "world war"),
    "Western": ("western", "westerns", "cowboy", "cowboys", "wild west"),
}
"""Catalog genre -> words that name it (MovieLens genre names; other catalogs match by their own names)."""

_NEGATIVE = re.compile(
    r"\b(?:no|not|nothing|none|never|nor|without|avoid|except|exclude|skip|hate[ds]?|hating|dislike[ds]?|"
    r"detest|can'?t stand|cannot stand|couldn'?t stand|sick of|tired of|fed up with|enough of|instead of|"
    r"rather than|other than|don'?t|do not|didn'?t|did not|doesn'?t|does not|wasn'?t|weren'?t|isn'?t|aren'?t|"
    r"won'?t|wouldn'?t|not a fan of|no more)\b", re.IGNORECASE)
_POSITIVE = re.compile(
    r"\b(?:like[ds]?|love[ds]?|loving|enjoy(?:ed|s)?|adore[ds]?|want(?:ed|s)?|prefer(?:red|s)?|fan of|"
    r"in the mood|give me|show me|looking for|how about|into|fond of|more of|some|and also|also)\b",
    re.IGNORECASE)
_VERDICT = re.compile(
    r"^\W*(?:(?:it|that|which|they|this one)\s+)?(?:is|was|are|were|'s|felt|seemed)?\s*(?:so |really |pretty |"
    r"way too |too |kinda |kind of |a bit |totally )?(?:boring|awful|terrible|bad|overrated|meh|lame|dull|"
    r"the worst|garbage|rubbish|not (?:good|great|for me|my thing)|not my (?:thing|cup of tea)|a waste)\b"
    r"|^\W*(?:sucked|sucks|bored me|put me to sleep|isn'?t my thing|is not my thing|not for me|"
    r"(?:that )?i (?:didn'?t|did not|don'?t|do not|never) (?:like|enjoy|love)|(?:that )?i (?:hated|disliked|hate))\b",
    re.IGNORECASE)
_BOUNDARY = re.compile(r"\b(?:and|or|but|then|plus)\b|[,;]", re.IGNORECASE)
NEGATED_CUE_WINDOW = 2
"""A positive cue with a negation this many words or fewer before it is a negative cue ("don't like")."""


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
            words = {genre.lower(), *_WORDS.get(genre, ())}
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


def negative(text: str, start: int, end: int) -> bool:
    """Whether the mention at ``text[start:end]`` is unwanted (see the module docstring)."""
    before = text[:start]
    last_negative = max((m.end() for m in _NEGATIVE.finditer(before)), default=-1)
    last_positive = max((m.end() for m in _POSITIVE.finditer(before) if not _cue_negated(before, m.start())),
                        default=-1)
    if last_negative > last_positive:
        return True
    after = text[end:]
    cut = _BOUNDARY.search(after)
    return bool(_VERDICT.search(after[:cut.start()] if cut else after))


def _cue_negated(text: str, start: int) -> bool:
    words = text[:start].split()[-NEGATED_CUE_WINDOW:]
    return bool(words) and bool(_NEGATIVE.search(" ".join(words))) and not _BOUNDARY.search(" ".join(words))
