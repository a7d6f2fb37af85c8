"""Test doubles shared by several test folders: well-known movies for small catalogs, a scripted model, a cyclic
sequence dataset."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recllm.data.dataset import Dataset
from recllm.data.vocabulary import Vocabulary
from recllm.llm import LLM, Completion, GenerationRequest

CYCLE = 20
"""Items in the cyclic dataset: item index k is "i{k}", always followed by "i{k+1 mod CYCLE}"."""


def cyclic_dataset(n_users: int, length: int = 10, seed: int = 0, shuffle: bool = False) -> Dataset:
    """Each user walks i, i+1, i+2, ... (mod CYCLE) from a seeded random start: a sequence any working
    sequential model learns exactly. ``shuffle`` puts the rows in random file order (time still orders them)."""
    rng = np.random.default_rng(seed)
    users, items, stamps = [], [], []
    for u in range(n_users):
        start = int(rng.integers(CYCLE))
        for step in range(length):
            users.append(f"u{u}")
            items.append(f"i{(start + step) % CYCLE}")
            stamps.append(1000 * u + step)
    order = rng.permutation(len(users)) if shuffle else np.arange(len(users))
    return Dataset.from_ids(np.array(users)[order], np.array(items)[order], timestamps=np.array(stamps)[order],
                            name="cyclic", item_vocab=Vocabulary([f"i{k}" for k in range(CYCLE)], kind="item"))

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
