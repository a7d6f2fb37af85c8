"""Fixtures for the re-rankers: the real default model, a tiny catalog of well-known movies.

Well-known titles give the small model world knowledge to use; the fakes script what a model says so the
parser, grounding and aggregation can be checked exactly (see rerank_helpers.py).
"""

from __future__ import annotations

import pytest
from rerank_helpers import CANDIDATES, MOVIES, itemlist

from recllm.data import Item, ItemCatalog, ItemList


@pytest.fixture(scope="session")
def movies() -> ItemCatalog:
    return ItemCatalog(Item(i, t, y, tuple(g.split("|"))) for i, t, y, g in MOVIES)



@pytest.fixture
def candidates() -> ItemList:
    return itemlist(CANDIDATES)
