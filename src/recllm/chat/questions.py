"""Answers to questions about one item from its catalog facts: "is it animated?", "how old is it?", "what
year is the second one from?", "is it a comedy?". Only what the catalog holds is answered; anything else
("who directs it?") gets a plain "the catalog does not say"."""

from __future__ import annotations

import re

from recllm.data.catalog import Item
from recllm.tasks.genre_words import GenreReader

_QUESTION = re.compile(r"^\W*(?:is|was|are|does|do|how old|what year|which year|when|what genre|what kind|"
                       r"what type|what's|whats|what is|who|how long|tell me about)\b|\?\s*$", re.IGNORECASE)
_AGE = re.compile(r"\b(?:how old|what year|which year|when (?:was|is|did)|from when|released|come out|year)\b",
                  re.IGNORECASE)
_GENRES = re.compile(r"\b(?:what genre|which genre|what kind|what type|genres?)\b", re.IGNORECASE)
_PRONOUN = re.compile(r"\b(?:it|that one|this one|the (?:first|second|third|fourth|fifth|last) one)\b",
                      re.IGNORECASE)
_ABOUT = re.compile(r"\b(?:tell me about|what is it about|what's it about|about)\b", re.IGNORECASE)


def is_question(text: str) -> bool:
    """Whether ``text`` reads as a question (a question word first or a question mark last)."""
    return bool(_QUESTION.search(text.strip()))


class FactAnswerer:
    """Answers a question about an item from its year and genres (see the module docstring)."""

    def __init__(self, genres: GenreReader, newest_year: int | None) -> None:
        self.genres = genres
        self.newest_year = newest_year

    def answer(self, question: str, item: Item) -> str | None:
        """The answer, or None when the question asks for nothing the catalog holds about items."""
        label = item.label()
        asked = [m.genre for m in self.genres.mentions(question)]
        if asked:
            has = [g for g in dict.fromkeys(asked) if g in item.genres]
            lacks = [g for g in dict.fromkeys(asked) if g not in item.genres]
            parts = []
            if has:
                parts.append(f"Yes: {label} is {' and '.join(has)}")
            if lacks:
                parts.append(f"{'but' if has else 'No:'} {label if not has else 'it'} is not {' or '.join(lacks)}")
            return (", ".join(parts) if has else " ".join(parts)) + f" (its genres: {', '.join(item.genres)})."
        if _AGE.search(question):
            if item.year is None:
                return f"The catalog gives no year for {label}."
            age = f", {self.newest_year - item.year} years before the newest film in the catalog" \
                if self.newest_year is not None and self.newest_year > item.year else ""
            return f"{item.display_title} is from {item.year}{age}."
        if _GENRES.search(question) or _ABOUT.search(question):
            return f"{label}: {', '.join(item.genres) or 'no genres listed'}. The catalog holds its title, year " \
                   "and genres only."
        if is_question(question) and _PRONOUN.search(question):  # "who directed it?": say what is known
            return f"The catalog does not say that about {label}: it holds its title, year and genres " \
                   f"({', '.join(item.genres) or 'none listed'})."
        return None
