"""Item texts for embedding ("Title (year); genres: ...") and their embeddings, cached in the embedding store."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import ModuleType

import numpy as np

from recllm.data.catalog import ItemCatalog
from recllm.distributed import contiguous_shards, map_shards
from recllm.errors import ConfigError
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


def embed_items(catalog: ItemCatalog, item_ids: Sequence[str], embedder: Embedder | str = "st", *,
                shards: int = 1, ray: ModuleType | None = None) -> np.ndarray:
    """Embeddings (len(item_ids), dim) of the items' catalog texts; computed once per embedder and catalog
    text, then read from the embedding store. ``embedder`` is an Embedder or a spec for ``create_embedder``.

    With ``ray`` (and an embedder spec) the texts are embedded in ``shards`` contiguous shards as Ray tasks,
    each worker loading the embedder once; the vectors go to the same store.
    """
    if isinstance(embedder, str):
        from recllm.llm.factory import create_embedder

        spec = embedder
        embedder = create_embedder(spec)
    elif ray is not None or shards != 1:
        raise ConfigError("sharded embedding (over Ray or not) takes an embedder spec such as 'st', not a loaded "
                          "embedder: each shard's process builds its own")
    texts = item_texts(catalog, [str(i) for i in item_ids])
    if ray is None and shards == 1:
        return embed_stored(embedder, texts)
    return embed_stored(embedder, texts, compute=lambda todo: embed_sharded(spec, todo, shards=shards, ray=ray))


def embed_sharded(spec: str, texts: Sequence[str], *, shards: int, ray: ModuleType | None = None) -> np.ndarray:
    """``create_embedder(spec).embed(texts)`` in ``shards`` contiguous shards (Ray tasks with ``ray``), in order.
    A shard is batched on its own, so vectors agree with one pass within float rounding (not bit for bit)."""
    parts = [list(part) for part in contiguous_shards(texts, shards)]
    results = map_shards(_embed_shard, parts, shared=(spec,), ray=ray)
    return np.concatenate(results) if results else np.zeros((0, _embedder(spec).dim), dtype=np.float32)


_EMBEDDERS: dict[str, Embedder] = {}
"""Embedders built from specs in this process (a Ray worker loads each once)."""


def _embedder(spec: str) -> Embedder:
    if spec not in _EMBEDDERS:
        from recllm.llm.factory import create_embedder

        _EMBEDDERS[spec] = create_embedder(spec)
    return _EMBEDDERS[spec]


def _embed_shard(texts: list[str], spec: str) -> np.ndarray:
    return _embedder(spec).embed(texts)
