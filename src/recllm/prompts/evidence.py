"""Retrieval-augmented ranking prompts: beside each candidate, the user's history items closest to it.

A small model rarely connects a candidate with the one item of a 20-item history that makes it a good pick.
``NearestHistory`` does that retrieval outside the model: with one vector per item (by default the embedding
of the item's catalog text), it names for each candidate the ``k`` history items of highest cosine similarity,
and the prompt builder writes them into the candidate's line ("close to: Heat (1995); Ronin (1998)").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from recllm.errors import ConfigError

if TYPE_CHECKING:
    from recllm.data.catalog import ItemCatalog
    from recllm.llm.base import Embedder


class NearestHistory:
    """For a candidate, the ``k`` history items most similar to it by the cosine of their vectors.

    ``item_ids`` and ``vectors`` (one row each) define the item space; items outside it (new or unknown) get
    no evidence and are never named. Items at a cosine of ``min_similarity`` or less (default 0: unrelated or
    opposed) are not named either, so a candidate unlike everything the user watched carries no misleading
    "close to". Ties go to the newer history item.
    """

    def __init__(self, item_ids: Sequence[str], vectors: np.ndarray, *, k: int = 2,
                 min_similarity: float = 0.0) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(item_ids):
            raise ConfigError(f"nearest-history evidence needs one vector per item: {len(item_ids)} items, vectors "
                              f"of shape {vectors.shape}")
        if k < 1:
            raise ConfigError(f"nearest-history evidence needs k >= 1 items per candidate, got {k}")
        if not -1.0 <= min_similarity < 1.0:
            raise ConfigError(f"min_similarity is a cosine, between -1 and 1 (excluded); got {min_similarity}")
        if not np.isfinite(vectors).all():
            raise ConfigError("nearest-history evidence: the item vectors hold NaN or infinite values")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors = vectors / np.where(norms > 0, norms, 1.0)
        self.index = {str(item): row for row, item in enumerate(item_ids)}
        if len(self.index) != len(item_ids):
            raise ConfigError("nearest-history evidence: the same item id appears twice")
        self.k = k
        self.min_similarity = min_similarity

    @classmethod
    def from_catalog(cls, catalog: ItemCatalog, embedder: Embedder | str = "st", *, k: int = 2,
                     min_similarity: float = 0.0) -> NearestHistory:
        """Vectors from the embeddings of every catalog item's text (computed once, then read from the
        embedding store); ``embedder`` as ``recllm.llm.item_text.embed_items`` takes it."""
        from recllm.llm.item_text import embed_items

        ids = [item.id for item in catalog]
        return cls(ids, embed_items(catalog, ids, embedder), k=k, min_similarity=min_similarity)

    def closest(self, candidate: str, history: Sequence[str]) -> list[str]:
        """Up to ``k`` distinct history items closest to ``candidate``, closest first (none for an unknown
        candidate; unknown history items and the candidate itself are skipped)."""
        row = self.index.get(str(candidate))
        if row is None:
            return []
        seen: dict[str, int] = {}
        for position, item in enumerate(history):  # newest occurrence wins, so ties favour recent items
            if str(item) in self.index and str(item) != str(candidate):
                seen[str(item)] = position
        if not seen:
            return []
        items = list(seen)
        rows = np.fromiter((self.index[i] for i in items), dtype=np.int64, count=len(items))
        similarity = self.vectors[rows] @ self.vectors[row]
        recency = np.asarray([seen[i] for i in items])
        order = np.lexsort((-recency, -similarity))  # by similarity, then newest first
        return [items[i] for i in order[:self.k] if similarity[i] > self.min_similarity]
