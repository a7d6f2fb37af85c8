"""Test doubles shared by several test folders: well-known movies for small catalogs, a scripted model."""

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
    ("jurassic", "Jurassic Park", 1993, "Action|Adventure|Sci-Fi"),
    ("fargo", "Fargo", 1996, "Crime|Drama|Thriller"),
    ("alien", "Alien", 1979, "Horror|Sci-Fi"),
    ("aliens", "Aliens", 1986, "Action|Sci-Fi|Thriller"),
    ("terminator", "Terminator, The", 1984, "Action|Sci-Fi"),
    ("casablanca", "Casablanca", 1942, "Drama|Romance"),
    ("raiders", "Raiders of the Lost Ark", 1981, "Action|Adventure"),
    ("bttf", "Back to the Future", 1985, "Comedy|Sci-Fi"),
    ("poppins", "Mary Poppins", 1964, "Children's|Musical"),
    ("pulp", "Pulp Fiction", 1994, "Crime|Drama"),
    ("shawshank", "Shawshank Redemption, The", 1994, "Drama"),
    ("gump", "Forrest Gump", 1994, "Comedy|Romance|War"),
    ("schindler", "Schindler's List", 1993, "Drama|War"),
    ("lambs", "Silence of the Lambs, The", 1991, "Drama|Thriller"),
    ("aladdin", "Aladdin", 1992, "Animation|Children's|Comedy"),
    ("beauty", "Beauty and the Beast", 1991, "Animation|Musical"),
    ("et", "E.T. the Extra-Terrestrial", 1982, "Children's|Sci-Fi"),
]


class ScriptedLLM(LLM):
    """A model that answers generation requests with the given texts, in turn; it cannot score."""

    backend = "fake"

    def __init__(self, texts: Sequence[str]) -> None:
        super().__init__("scripted")
        self.texts = list(texts)
        self.prompts: list[GenerationRequest] = []

    def _generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        out = []
        for request in requests:
            self.prompts.append(request)
            if not self.texts:
                raise AssertionError("ScriptedLLM ran out of scripted answers")
            text = self.texts.pop(0)
            out.append(Completion(text=text, finish_reason="stop", prompt_tokens=100,
                                  completion_tokens=max(1, len(text) // 4)))
        return out
