"""The default embedder: the pinned, checksum-verified all-MiniLM-L6-v2 through sentence-transformers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recllm.artifacts import sha256_of, verify_checksum
from recllm.errors import ArtifactError
from recllm.llm import MINILM_PACKAGE, create_embedder
from recllm.llm.embedder import SentenceTransformerEmbedder
from recllm.llm.resolve import MINILM_WEIGHTS


def test_embeddings_are_unit_length_float32(embedder: SentenceTransformerEmbedder) -> None:
    vectors = embedder.embed(["A cat sits on the mat.", "Quarterly tax revenue fell.", ""])
    assert embedder.dim == 384
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_similar_sentences_are_closer(embedder: SentenceTransformerEmbedder) -> None:
    cat, kitten, taxes = embedder.embed(["A cat sits on the mat.", "A kitten is sitting on a rug.",
                                         "Quarterly tax revenue fell sharply."])
    assert cat @ kitten > 0.5
    assert cat @ kitten > cat @ taxes + 0.3


def test_embeddings_are_deterministic(embedder: SentenceTransformerEmbedder) -> None:
    texts = ["Toy Story (1995), Animation", "Heat (1995), Action, Crime"]
    np.testing.assert_array_equal(embedder.embed(texts), embedder.embed(texts))


def test_weights_match_the_pinned_checksum(embedder: SentenceTransformerEmbedder) -> None:
    weights = Path(embedder.source) / "model.safetensors"
    [pinned] = [f for f in MINILM_PACKAGE.files if f.member == MINILM_WEIGHTS]
    assert sha256_of(weights) == pinned.sha256
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        verify_checksum(weights, "0" * 64, origin="minilm weights")


def test_factory_builds_the_default_embedder() -> None:
    embedder = create_embedder("minilm")
    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert embedder.model_name == "all-MiniLM-L6-v2"
