"""Small synthetic inputs for the contract suites: a sequence dataset any model can fit in a blink, and a
catalog of well-known films (so a small language model has some world knowledge to work with)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recllm.data.catalog import Item, ItemCatalog
from recllm.data.dataset import Dataset
from recllm.data.itemlist import ItemList
from recllm.data.vocabulary import Vocabulary

__all__ = ["FILMS", "RING", "film_catalog", "ranked", "ring_dataset"]

RING = 20
"""Items in ``ring_dataset``: ``"i{k}"`` for k in 0..RING-1, each always followed by ``"i{k+1 mod RING}"``."""


def ring_dataset(n_users: int = 30, length: int = 8, *, seed: int = 0, n_items: int = RING) -> Dataset:
    """Users ``"u0"``.. each walking ``length`` consecutive items round a ring of ``n_items`` from a seeded random
    start, with increasing timestamps: a pattern every sequential model learns, and co-occurrence every
    collaborative model picks up. With ``length < n_items`` no user repeats an item, so every user has items
    left to recommend. The item vocabulary lists all ``n_items`` items in ring order."""
    if n_users < 1 or length < 1 or n_items < 2:
        raise ValueError(f"ring_dataset needs n_users >= 1, length >= 1, n_items >= 2; got {n_users}, {length}, "
                         f"{n_items}")
    rng = np.random.default_rng(seed)
    starts = rng.integers(n_items, size=n_users)
    users = np.repeat([f"u{u}" for u in range(n_users)], length)
    steps = np.tile(np.arange(length), n_users)
    items = [f"i{(int(starts[u]) + s) % n_items}" for u, s in zip(np.repeat(np.arange(n_users), length), steps,
                                                                   strict=True)]
    stamps = np.repeat(np.arange(n_users) * 10_000, length) + steps
    vocab = Vocabulary([f"i{k}" for k in range(n_items)], kind="item")
    return Dataset.from_ids(users, items, timestamps=stamps, item_vocab=vocab, name="ring")


FILMS: tuple[tuple[str, str, int, str], ...] = (
    ("star-wars", "Star Wars", 1977, "Action|Adventure|Sci-Fi"),
    ("empire", "Empire Strikes Back, The", 1980, "Action|Adventure|Sci-Fi"),
    ("jedi", "Return of the Jedi", 1983, "Action|Adventure|Sci-Fi"),
    ("raiders", "Raiders of the Lost Ark", 1981, "Action|Adventure"),
    ("toy-story", "Toy Story", 1995, "Animation|Children's|Comedy"),
    ("lion-king", "Lion King, The", 1994, "Animation|Children's|Musical"),
    ("titanic", "Titanic", 1997, "Drama|Romance"),
    ("godfather", "Godfather, The", 1972, "Crime|Drama"),
    ("matrix", "Matrix, The", 1999, "Action|Sci-Fi"),
    ("jaws", "Jaws", 1975, "Horror|Thriller"),
    ("casablanca", "Casablanca", 1942, "Drama|Romance|War"),
    ("alien", "Alien", 1979, "Horror|Sci-Fi"),
)
"""(id, title, year, genres) of well-known films; titles in the MovieLens style ("Matrix, The")."""


def film_catalog() -> ItemCatalog:
    """An ``ItemCatalog`` of ``FILMS``."""
    return ItemCatalog(Item(i, title, year, tuple(genres.split("|"))) for i, title, year, genres in FILMS)


def ranked(ids: Sequence[str]) -> ItemList:
    """A retriever result over ``ids`` in the given order, with strictly decreasing scores from 1 to 0."""
    n = len(ids)
    scores = np.linspace(1.0, 0.0, n) if n > 1 else np.ones(n)
    return ItemList(tuple(ids), scores)
