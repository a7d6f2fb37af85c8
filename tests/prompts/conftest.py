"""Fixtures for the prompt layer: a tiny synthetic movie catalog and interaction log, and SmolLM2's tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

from recllm.data import Dataset, Item, ItemCatalog

GENRES = ("Comedy", "Drama", "Horror", "Sci-Fi", "Western")

# (user, item, rating, timestamp); each user's last row ("h-<user>") is held out from training.
ROWS = [
    ("alice", "m1", 5, 10), ("alice", "m2", 4, 20), ("alice", "m3", 3, 30), ("alice", "m4", 4, 40),
    ("alice", "m5", 2, 50), ("alice", "h-alice", 5, 60),
    ("bob", "m1", 4, 11), ("bob", "m2", 5, 21), ("bob", "m3", 4, 31), ("bob", "m4", 3, 41), ("bob", "m7", 5, 51),
    ("bob", "h-bob", 1, 61),
    ("carol", "m1", 3, 12), ("carol", "m8", 4, 22), ("carol", "m9", 2, 32), ("carol", "h-carol", 4, 62),
    ("dave", "m10", 5, 13), ("dave", "m11", 4, 23), ("dave", "h-dave", 3, 63),
]
HELD_OUT = {"alice": "h-alice", "bob": "h-bob", "carol": "h-carol", "dave": "h-dave"}


def _catalog_items() -> list[Item]:
    items = [Item(f"m{i}", f"Movie Number {i}", 1980 + i, (GENRES[i % 5],), {"director": f"Director {i}"})
             for i in range(1, 61)]
    items += [Item(h, f"Secret Held Out {user.title()}", 2001, ("Drama",)) for user, h in HELD_OUT.items()]
    return items


@pytest.fixture(scope="session")
def held_out() -> dict[str, str]:
    """Each user's held-out (test) item: never in ``train``."""
    return dict(HELD_OUT)


@pytest.fixture(scope="session")
def catalog() -> ItemCatalog:
    return ItemCatalog(_catalog_items())


@pytest.fixture(scope="session")
def full() -> Dataset:
    users, items, ratings, ts = zip(*ROWS, strict=True)
    return Dataset.from_ids(list(users), list(items), ratings=np.array(ratings), timestamps=np.array(ts),
                            name="synthetic")


@pytest.fixture(scope="session")
def train(full: Dataset) -> Dataset:
    """Training interactions only: every user's last (held-out) item removed."""
    item_ids = np.asarray(full.item_vocab.ids, dtype=object)[full.items]
    return full.take(~np.isin(item_ids, list(HELD_OUT.values())), name="synthetic-train")


@pytest.fixture(scope="session")
def unrated(full: Dataset) -> Dataset:
    """The same interactions without ratings."""
    return Dataset(users=full.users, items=full.items, user_vocab=full.user_vocab, item_vocab=full.item_vocab,
                   timestamps=full.timestamps, name="unrated")

