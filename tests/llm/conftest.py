"""Fixtures for the LLM layer: the real default model and embedder, loaded once per session, never the network."""

from __future__ import annotations

import os

# The library passes local_files_only for local models; this also keeps any stray hub lookup offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections.abc import Iterator

import pytest
import torch

from recllm.llm.embedder import SentenceTransformerEmbedder
from recllm.llm.hf import HFBackend


@pytest.fixture(scope="session")
def llm() -> HFBackend:
    """SmolLM2-135M-Instruct from the pinned package (converted from GGUF on the very first run)."""
    return HFBackend()


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the pinned package."""
    return SentenceTransformerEmbedder()


@pytest.fixture(autouse=True)
def _single_torch_thread() -> Iterator[None]:
    """Run this folder's model calls on one torch thread, restoring the setting after each test.

    These tests make many tiny forward passes; on a shared 2-core machine OpenMP's spinning worker threads
    made the folder about ten times slower (205 s against 18 s) whenever another process was busy.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
