"""Hypothesis strategies for property-based tests of recllm code: random interaction logs and score matrices.

Needs the ``hypothesis`` package (in recllm's ``dev`` extra); ``import recllm.testing`` itself does not.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from recllm.data.dataset import Dataset

__all__ = ["datasets", "integer_scores"]


@st.composite
def datasets(draw: st.DrawFn, *, max_users: int = 6, max_items: int = 8, max_length: int = 6,
             max_timestamp: int = 5, distinct_items: bool = False) -> Dataset:
    """A small ``Dataset`` built with ``Dataset.from_ids``: users ``"u{n}"`` with 1..``max_length``
    interactions each over items ``"i{n}"``, timestamps in 0..``max_timestamp`` (so ties are common), rows in
    a random file order. ``distinct_items`` keeps each user from interacting with an item twice."""
    n_users = draw(st.integers(1, max_users))
    n_items = draw(st.integers(1, max_items))
    users: list[str] = []
    items: list[str] = []
    stamps: list[int] = []
    for u in range(n_users):
        longest = min(max_length, n_items) if distinct_items else max_length
        length = draw(st.integers(1, longest))
        if distinct_items:
            chosen = draw(st.permutations(range(n_items)))[:length]
        else:
            chosen = draw(st.lists(st.integers(0, n_items - 1), min_size=length, max_size=length))
        users += [f"u{u}"] * length
        items += [f"i{i}" for i in chosen]
        stamps += draw(st.lists(st.integers(0, max_timestamp), min_size=length, max_size=length))
    order = np.asarray(draw(st.permutations(range(len(users)))), dtype=np.int64)
    return Dataset.from_ids(np.asarray(users)[order], np.asarray(items)[order],
                            timestamps=np.asarray(stamps, dtype=np.int64)[order], name="random")


@st.composite
def integer_scores(draw: st.DrawFn, *, max_rows: int = 4, max_items: int = 12, low: int = -5,
                   high: int = 5) -> np.ndarray:
    """A float64 score matrix (rows, items) of small whole numbers, so ties are common and adding or scaling
    by whole numbers is exact."""
    rows = draw(st.integers(1, max_rows))
    n = draw(st.integers(1, max_items))
    values = draw(st.lists(st.integers(low, high), min_size=rows * n, max_size=rows * n))
    return np.asarray(values, dtype=np.float64).reshape(rows, n)
