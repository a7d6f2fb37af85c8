"""EASE (Steck 2019): closed-form item-item linear autoencoder with a zero diagonal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import numpy as np
from pydantic import Field

from recllm.config import checked
from recllm.data.dataset import Dataset
from recllm.models.base import Recommender, history_matrix, register


@register
class EASE(Recommender):
    """B = I - P diagMat(1/diag(P)), P = (X^T X + l2 I)^-1. Memory is n_items^2 floats."""

    name = "ease"

    @checked()
    def __init__(self, l2: Annotated[float, Field(gt=0)] = 500.0) -> None:
        super().__init__()
        self.l2 = l2
        self.weights_: np.ndarray | None = None

    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        x = dataset.matrix
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        precision = np.linalg.inv(gram)
        weights = precision / (-np.diag(precision))
        weights[np.diag_indices_from(weights)] = 0.0
        self.weights_ = weights.astype(np.float32)

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        self._require_fitted()
        assert self.weights_ is not None
        return np.asarray(history_matrix(histories, self.n_items) @ self.weights_, dtype=np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        assert self.weights_ is not None
        return {"weights": self.weights_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.weights_ = arrays["weights"]
