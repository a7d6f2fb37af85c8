"""Content-based retrieval from item text: items scored by the cosine between their text vector and the user's
text profile (the mean vector of the newest history items). It needs no interaction with an item, so it
recommends items nobody has seen yet (cold start) and is the text-alone baseline for text-fused models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import numpy as np
from pydantic import Field

from recllm.config import checked
from recllm.data.dataset import Dataset
from recllm.errors import ConfigError
from recllm.models.base import Recommender, register
from recllm.models.text import ItemEmbeddings, ItemTextInput


@register
class TextSimilarity(ItemTextInput, Recommender):
    """Cosine of item-text vectors to the mean of the user's newest ``recent`` history vectors; item texts come
    from the composition layer (``ReadsItemText``: the ``embedder``'s vectors of the catalog texts)."""

    name = "text"

    @checked()
    def __init__(self, embedder: str = "st", text_catalog: str = "auto",
                 recent: Annotated[int, Field(ge=1)] = 50, profiles: str = "none") -> None:
        super().__init__()
        self.embedder = embedder
        self.text_catalog = text_catalog
        self.recent = recent
        self.profiles = profiles
        self.vectors_: np.ndarray | None = None
        self._item_embeddings: ItemEmbeddings | None = None

    # ---- ReadsItemText ----------------------------------------------------------------------------
    def needs_item_embeddings(self) -> bool:
        return self._item_embeddings is None and self.vectors_ is None

    # ---- fitting and scoring ----------------------------------------------------------------------
    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        if self._item_embeddings is None:
            raise ConfigError(f"text: no item-text embeddings for dataset '{dataset.name}'; build the model with "
                              "recllm.pipeline.build_retriever (as evaluate, recommend and serve do) or call "
                              "with_item_embeddings(...) before fit")
        vectors = np.asarray(self._item_embeddings.aligned(list(dataset.item_vocab.ids)), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors_ = vectors / np.maximum(norms, 1e-12)

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        self._require_fitted()
        assert self.vectors_ is not None
        profiles = np.zeros((len(histories), self.vectors_.shape[1]), dtype=np.float32)
        for row, history in enumerate(histories):
            if len(history):
                profiles[row] = self.vectors_[np.asarray(history)[-self.recent:]].mean(axis=0)
        return (profiles @ self.vectors_.T).astype(np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {} if self.vectors_ is None else {"vectors": self.vectors_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.vectors_ = np.asarray(arrays["vectors"], dtype=np.float32)
