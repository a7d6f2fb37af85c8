"""Fixtures for the LLM layer: the real embedder, loaded once per session (the model fixture is in tests/)."""

from __future__ import annotations

import pytest

from recllm.llm.embedder import SentenceTransformerEmbedder


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the pinned package."""
    return SentenceTransformerEmbedder()
