"""Free-text wishes ("something with space battles and robots") matched against item descriptions.

The pinned sentence embedder (MiniLM) embeds every catalog item's one-line description once (kept on
disk by ``recllm.llm.embedding_store``, so a restart does not embed them again); a wish is
embedded at chat time and its cosine similarity to each item lifts the items closest to what was asked
for. MovieLens descriptions hold only title, year and genres, so the match leans on what the embedder
knows about titles and genre words: a nudge inside the hard constraints, never a constraint itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recllm.data.catalog import ItemCatalog
from recllm.llm.base import Embedder
from recllm.llm.embedding_store import embed_stored

log = logging.getLogger(__name__)


class WishMatcher:
    """Cosine similarity between wishes and every item in ``item_ids`` (in that order)."""

    def __init__(self, embedder: Embedder, catalog: ItemCatalog, item_ids: Sequence[str], *,
                 store: Path | None = None) -> None:
        """``store``: folder of stored description embeddings (default ``$RECLLM_HOME/cache/embeddings``)."""
        start = time.perf_counter()
        self.embedder = embedder
        self.item_ids = tuple(item_ids)
        texts = [catalog.describe(i) if i in catalog else str(i) for i in self.item_ids]
        self.vectors = embed_stored(embedder, texts, store)
        log.info("embedded %d item descriptions with %s in %.1f s (stored embeddings are reused)", len(texts),
                 embedder.model_name, time.perf_counter() - start)

    def similarity(self, wishes: Sequence[str]) -> np.ndarray:
        """Cosine similarity (len(item_ids),) of every item to the mean of the wishes' embeddings."""
        if not wishes:
            raise ValueError("no wishes to match")
        query = self.embedder.embed(list(wishes)).mean(axis=0)
        query /= max(float(np.linalg.norm(query)), 1e-12)
        return (self.vectors @ query).astype(np.float64)


def blend(retriever: np.ndarray, similarity: np.ndarray, weight: float) -> np.ndarray:
    """Retriever scores plus ``weight`` times the wish similarity, both standardised over the finite
    (allowed) entries so neither scale dominates; non-finite entries stay as they are."""
    out = retriever.copy()
    finite = np.isfinite(retriever)
    if finite.sum() < 2:
        return out

    def z(values: np.ndarray) -> np.ndarray:
        spread = values.std()
        return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)

    out[finite] = z(retriever[finite]) + weight * z(similarity[finite])
    return out
