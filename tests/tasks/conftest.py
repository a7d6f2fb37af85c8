"""Fixtures for the LLM tasks: a tiny catalog of well-known movies (see tasks_helpers.py)."""

from __future__ import annotations

import pytest
from tasks_helpers import MOVIES

from recllm.data import Item, ItemCatalog


@pytest.fixture(scope="session")
def movies() -> ItemCatalog:
    return ItemCatalog(Item(i, t, y, tuple(g.split("|"))) for i, t, y, g in MOVIES)
