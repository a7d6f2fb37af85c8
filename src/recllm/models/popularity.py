"""MostPopular: items ranked by how many training users interacted with them (the floor every model must beat)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recllm.data.dataset import Dataset
from recllm.models.base import Recommender, register


@register
class MostPopular(Recommender):
    name = "pop"

    def __init__(self) -> None:
        super().__init__()
        self.popularity_: np.ndarray | None = None

    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        self.popularity_ = dataset.item_popularity.astype(np.float32)

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        self._require_fitted()
        assert self.popularity_ is not None
        return np.broadcast_to(self.popularity_, (len(histories), len(self.popularity_))).copy()

    def _arrays(self) -> dict[str, np.ndarray]:
        assert self.popularity_ is not None
        return {"popularity": self.popularity_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.popularity_ = arrays["popularity"]
