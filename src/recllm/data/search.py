"""Title search as people type it: whole words, the start of a word ("toy" finds "Toy Story"), any case,
articles left out or moved ("usual suspects", "Suspects, The"), accents dropped, small typos ("toy stroy",
"godfahter") and numerals for number words ("12 monkeys").

Each title is split into normalised words once. A query matches a title when every query word matches one of
its words: exactly, as a prefix (the last query word from its first letter, other words from three letters),
or within a small edit distance (one edit for words of 4-6 letters, two from 7; rapidfuzz's Levenshtein
distance). Matches score by how exactly the words matched, whether they appear in order at the start of the
title, and how much of the title the query covers; a query written without spaces or with a swapped word
falls back to a whole-string fuzzy ratio.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

EXACT, PREFIX = 1.0, 0.9
_WORD = re.compile(r"[a-z0-9]+")
MIN_PREFIX = 3
"""A query word other than the last must have this many letters to match as the start of a title word."""
_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                 "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
_NUMBERS = {**{str(n): w for n, w in enumerate(_NUMBER_WORDS)}, **{w: str(n) for n, w in enumerate(_NUMBER_WORDS)}}
"""Numerals and number words up to twenty stand for each other ("12 monkeys" finds "Twelve Monkeys")."""
MIN_WHOLE = 85.0
"""The least whole-string ratio (0-100) for a title the word match missed."""


def max_edits(word: str) -> int:
    """Typos tolerated in a query word: none below 4 letters, one up to 6, two from 7."""
    return 0 if len(word) < 4 else 1 if len(word) < 7 else 2


@dataclass(frozen=True)
class _Entry:
    key: str
    words: tuple[str, ...]
    text: str


class TitleSearch:
    """Ranks ``(key, normalised title)`` pairs against a query; ``normalise`` is the catalog's own
    normalisation (articles, year, accents and punctuation removed), applied to titles and queries alike."""

    def __init__(self, titles: Iterable[tuple[str, str]]) -> None:
        self.entries = [_Entry(key, tuple(_WORD.findall(text)), " ".join(_WORD.findall(text)))
                        for key, text in titles]

    def search(self, query: str, limit: int = 10) -> list[tuple[str, float]]:
        """Up to ``limit`` ``(key, score)`` pairs, best first (score in (0, 1]; ties keep catalog order)."""
        words = tuple(_WORD.findall(query))
        if not words or limit < 1:
            return []
        text = " ".join(words)
        scored: list[tuple[float, int, str]] = []
        for position, entry in enumerate(self.entries):
            score = self._score(words, text, entry)
            if score > 0:
                scored.append((score, position, entry.key))
        scored.sort(key=lambda s: (-s[0], s[1]))
        return [(key, round(score, 4)) for score, _, key in scored[:limit]]

    def _score(self, words: tuple[str, ...], text: str, entry: _Entry) -> float:
        if not entry.words:
            return 0.0
        if text == entry.text:
            return 2.0
        matched: list[tuple[float, int]] = []
        used: set[int] = set()
        for n, word in enumerate(words):
            best = (0.0, -1)
            for index, title_word in enumerate(entry.words):
                if index in used:
                    continue
                quality = _word_match(word, title_word, last=n == len(words) - 1)
                if quality > best[0]:
                    best = (quality, index)
            if best[1] < 0:
                matched = []
                break
            used.add(best[1])
            matched.append(best)
        if matched:
            quality = sum(q for q, _ in matched) / len(matched)
            positions = [i for _, i in matched]
            in_order = positions == sorted(positions)
            at_start = positions[0] == 0
            coverage = len(matched) / len(entry.words)
            return quality * (0.6 + 0.15 * in_order + 0.1 * at_start + 0.15 * coverage)
        ratio = fuzz.ratio(text.replace(" ", ""), entry.text.replace(" ", ""))
        if ratio >= MIN_WHOLE:
            return 0.5 * ratio / 100
        return 0.0


def _word_match(word: str, title_word: str, *, last: bool) -> float:
    """How well one query word matches one title word (0: not at all)."""
    if word == title_word or _NUMBERS.get(word) == title_word:
        return EXACT
    if title_word.startswith(word) and (last or len(word) >= MIN_PREFIX):
        return PREFIX
    edits = max_edits(word)
    if edits and abs(len(word) - len(title_word)) <= edits:
        distance = Levenshtein.distance(word, title_word, score_cutoff=edits)
        if distance <= edits:
            return 0.8 - 0.1 * distance
    if edits and len(title_word) > len(word) and word[0] == title_word[0]:  # "godfah" ~ "godfather"
        distance = Levenshtein.distance(word, title_word[:len(word)], score_cutoff=edits)
        if last and distance <= max(1, edits - 1):
            return 0.6
    return 0.0
