"""Item texts for embedding ("Title (year); genres: ...") and their embeddings, cached in the embedding store."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from recllm.data.catalog import ItemCatalog
from recllm.llm.base import Embedder
from recllm.llm.embedding_store import embed_stored

log = logging.getLogger(__name__)


def item_texts(catalog: ItemCatalog, item_ids: Sequence[str]) -> list[str]:
    """One text per item for embedding: "Title (year); genres: ..." from the catalog, the id when unknown."""
    texts, missing = [], 0
    for item in item_ids:
        if item in catalog:
            texts.append(catalog.describe(item))
        else:
            texts.append(str(item))
            missing += 1
    if missing:
        log.warning("item texts: %d of %d items are not in the catalog; their id is used as text",
                    missing, len(item_ids))
    return texts


def embed_items(catalog: ItemCatalog, item_ids: Sequence[str], embedder: Embedder | str = "st") -> np.ndarray:
    """Embeddings (len(item_ids), dim) of the items' catalog texts; computed once per embedder and catalog
    text, then read from the embedding store. ``embedder`` is an Embedder or a spec for ``create_embedder``."""
    if isinstance(embedder, str):
        from recllm.llm.factory import create_embedder

        embedder = create_embedder(embedder)
    return embed_stored(embedder, item_texts(catalog, [str(i) for i in item_ids]))
