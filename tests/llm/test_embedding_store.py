"""Stored catalog embeddings: computed once per (embedder, texts), read back, recomputed when damaged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recllm.llm.base import Embedder
from recllm.llm.embedding_store import embed_stored, store_key


class CountingEmbedder(Embedder):
    """Deterministic vectors from the text's characters; counts the texts it was asked to embed."""

    def __init__(self, name: str = "counting") -> None:
        super().__init__(name)
        self.calls = 0

    @property
    def dim(self) -> int:
        return 4

    def _embed(self, texts: list[str]) -> np.ndarray:
        self.calls += len(texts)
        return np.array([[len(t), sum(map(ord, t)) % 7, 1.0, t.count("a")] for t in texts], dtype=np.float32)


TEXTS = ["Alien (1979): Horror, Sci-Fi", "Fargo (1996): Crime, Drama", "a banana"]


def test_second_call_reads_the_store_and_returns_the_same_vectors(tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    first = embed_stored(embedder, TEXTS, tmp_path)
    assert embedder.calls == 3 and len(list(tmp_path.glob("*.npy"))) == 1
    again = embed_stored(embedder, TEXTS, tmp_path)
    assert embedder.calls == 3
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(np.linalg.norm(again, axis=1), 1.0, rtol=1e-6)


def test_other_texts_order_or_embedder_get_their_own_entry(tmp_path: Path) -> None:
    a, b = CountingEmbedder("a"), CountingEmbedder("b")
    keys = {store_key(a, TEXTS), store_key(a, TEXTS[::-1]), store_key(a, TEXTS[:2]), store_key(b, TEXTS)}
    assert len(keys) == 4
    embed_stored(a, TEXTS, tmp_path)
    embed_stored(b, TEXTS, tmp_path)
    assert (a.calls, b.calls) == (3, 3) and len(list(tmp_path.glob("*.npy"))) == 2


@pytest.mark.parametrize("damage", [b"not a numpy file", None])
def test_a_damaged_or_mismatched_entry_is_recomputed(tmp_path: Path, damage: bytes | None,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    embedder = CountingEmbedder()
    expected = embed_stored(embedder, TEXTS, tmp_path)
    entry = next(tmp_path.glob("*.npy"))
    if damage is None:
        np.save(entry, np.zeros((2, 4), dtype=np.float32))  # wrong shape
    else:
        entry.write_bytes(damage)
    again = embed_stored(embedder, TEXTS, tmp_path)
    assert embedder.calls == 6 and "embedding again" in caplog.text
    np.testing.assert_array_equal(again, expected)
    np.testing.assert_array_equal(np.load(entry), expected)  # repaired in place


def test_an_unwritable_store_still_returns_vectors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    vectors = embed_stored(CountingEmbedder(), TEXTS, blocker / "store")
    assert vectors.shape == (3, 4) and "could not write" in caplog.text
