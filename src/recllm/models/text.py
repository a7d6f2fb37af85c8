"""Item text for recommenders that read it: precomputed item embeddings and the protocol such models follow.

Recommenders live below the language-model layer, so they never embed text themselves. A model that reads
item text says so by following ``ReadsItemText``; the composition layer
(``recllm.pipeline.build_retriever``, used by every front end) embeds the catalog with the model's
``embedder`` and hands the vectors over before ``fit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, Self, runtime_checkable

import numpy as np

from recllm.errors import ConfigError


@dataclass(frozen=True)
class ItemEmbeddings:
    """One vector per item id: ``vectors[i]`` belongs to ``ids[i]``."""

    ids: tuple[str, ...]
    vectors: np.ndarray

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.ids):
            raise ConfigError(f"item embeddings must be (n_items={len(self.ids)}, dim), got {self.vectors.shape}")

    def aligned(self, item_ids: Sequence[str]) -> np.ndarray:
        """Rows in the order of ``item_ids``; an item without a vector is a ConfigError naming it."""
        where = {item: row for row, item in enumerate(self.ids)}
        missing = [item for item in item_ids if item not in where]
        if missing:
            raise ConfigError(f"no item embedding for {len(missing)} item(s), e.g. {missing[0]!r}")
        return self.vectors[[where[item] for item in item_ids]]


class ItemTextInput:
    """The part of ``ReadsItemText`` every text-reading model shares: keeps the handed-over vectors, and takes the
    text from the ``text_catalog`` dataset (``"auto"``: the data being fitted)."""

    text_catalog: str
    profiles: str = "none"
    _item_embeddings: ItemEmbeddings | None = None

    def with_item_embeddings(self, embeddings: ItemEmbeddings) -> Self:
        """Use these item-text vectors (aligned to the training items in ``fit``)."""
        self._item_embeddings = embeddings
        return self

    def text_source(self) -> str | None:
        return None if self.text_catalog == "auto" else self.text_catalog


@runtime_checkable
class ReadsItemText(Protocol):
    """A recommender that needs item-text embeddings before ``fit`` (TIGER, text-fused models)."""

    embedder: str
    """The embedder spec (``"st"``: the pinned MiniLM) the composition layer embeds item texts with."""
    profiles: str
    """``"none"``, or the LLM spec whose checked item profiles (``recllm.tasks.profiles``) join the item texts."""

    def text_source(self) -> str | None:
        """The dataset whose catalog holds the texts, or None for the data being fitted."""
        ...

    def needs_item_embeddings(self) -> bool:
        """True while nothing else (precomputed ids, a folder, given embeddings) provides the item text."""
        ...

    def with_item_embeddings(self, embeddings: ItemEmbeddings) -> Self:
        """Use these vectors (aligned to the training items in ``fit``)."""
        ...
