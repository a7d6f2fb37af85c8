"""Semantic ids from item text: embed the catalog texts (llm layer), then quantise them (models layer).

The quantisers, ``SemanticIds`` and the TIGER recommender live in ``recllm.models``; this module is
the step that needs a language-model embedder, used by ``recllm train semantic-ids`` and item naming.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from recllm.data.catalog import ItemCatalog
from recllm.errors import ConfigError
from recllm.llm.base import Embedder
from recllm.llm.item_text import embed_items, item_texts
from recllm.models.semantic_ids import (
    METHODS,
    RQVAE,
    RQKMeans,
    SemanticIds,
    collision_level,
    kmeans,
    quantise_items,
)

__all__ = ["METHODS", "RQVAE", "RQKMeans", "SemanticIds", "build_semantic_ids", "collision_level", "item_texts",
           "kmeans", "quantise_items"]


def build_semantic_ids(
    catalog: ItemCatalog | None,
    item_ids: Sequence[str],
    *,
    method: str = "rqkmeans",
    embedder: Embedder | str | None = None,
    embeddings: np.ndarray | None = None,
    levels: int = 3,
    codebook_size: int = 256,
    seed: int = 0,
    **options: Any,
) -> SemanticIds:
    """Semantic ids of ``item_ids`` from their catalog texts (embedded by ``embedder``, default pinned MiniLM)
    or from precomputed ``embeddings`` (n_items, d). ``options`` go to ``RQKMeans`` or ``RQVAE``."""
    ids = [str(i) for i in item_ids]
    if embeddings is None:
        if method not in METHODS:
            raise ConfigError(f"semantic ids: unknown method '{method}'; use one of {', '.join(METHODS)}")
        if catalog is None:
            raise ConfigError("semantic ids: give an item catalog (texts to embed) or precomputed embeddings")
        embeddings = embed_items(catalog, ids, embedder or "st")
    return quantise_items(ids, embeddings, method=method, levels=levels, codebook_size=codebook_size, seed=seed,
                          **options)
