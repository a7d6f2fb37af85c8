"""Shared helpers for the LLM task tests: a tiny catalog of well-known movies and a scripted fake model."""

from __future__ import annotations

from collections.abc import Sequence

from recllm.llm import LLM, Completion, GenerationRequest

MOVIES = [
    ("sw", "Star Wars", 1977, "Action|Adventure|Sci-Fi"),
    ("esb", "Empire Strikes Back, The", 1980, "Action|Adventure|Sci-Fi"),
    ("rotj", "Return of the Jedi", 1983, "Action|Adventure|Sci-Fi"),
    ("toy", "Toy Story", 1995, "Animation|Children's|Comedy"),
    ("titanic", "Titanic", 1997, "Drama|Romance"),
    ("godfather", "Godfather, The", 1972, "Crime|Drama"),
    ("matrix", "Matrix, The", 1999, "Action|Sci-Fi"),
    ("lion", "Lion King, The", 1994, "Animation|Children's|Musical"),
    ("alien", "Alien", 1979, "Horror|Sci-Fi"),
    ("aliens", "Aliens", 1986, "Action|Sci-Fi|Thriller"),
    ("terminator", "Terminator, The", 1984, "Action|Sci-Fi"),
    ("casablanca", "Casablanca", 1942, "Drama|Romance"),
    ("raiders", "Raiders of the Lost Ark", 1981, "Action|Adventure"),
    ("pulp", "Pulp Fiction", 1994, "Crime|Drama"),
    ("aladdin", "Aladdin", 1992, "Animation|Children's|Comedy"),
]
SCIFI = ["sw", "esb", "rotj", "alien", "terminator"]


class ScriptedLLM(LLM):
    """Answers generation requests with the given texts, in turn; it cannot score."""

    backend = "fake"

    def __init__(self, texts: Sequence[str]) -> None:
        super().__init__("scripted")
        self.texts = list(texts)

    def _generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        out = []
        for _ in requests:
            text = self.texts.pop(0)
            out.append(Completion(text=text, finish_reason="stop", prompt_tokens=10, completion_tokens=5))
        return out
