"""ALS and BPR matrix factorisation through the `implicit` package (CPU), with least-squares fold-in
for ad-hoc histories."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated

import numpy as np
from pydantic import Field
from threadpoolctl import threadpool_limits

from recllm.config import checked
from recllm.data.dataset import Dataset
from recllm.models.base import Recommender, register

log = logging.getLogger(__name__)


def fold_in(item_factors: np.ndarray, histories: Sequence[np.ndarray], confidence: float,
            regularization: float) -> np.ndarray:
    """User vectors for unseen histories by one implicit-ALS user step with the items fixed:
    x = (YᵀY + λI + (c-1) Σ_h y yᵀ)⁻¹ c Σ_h y (Hu, Koren and Volinsky 2008; what implicit solves)."""
    y = item_factors.astype(np.float64)
    base = y.T @ y + regularization * np.eye(y.shape[1])
    out = np.zeros((len(histories), y.shape[1]), dtype=np.float32)
    for row, history in enumerate(histories):
        items = np.unique(history)
        if len(items) == 0:
            continue
        yh = y[items]
        a = base + (confidence - 1.0) * (yh.T @ yh)
        out[row] = np.linalg.solve(a, confidence * yh.sum(axis=0))
    return out


class _FactorModel(Recommender):
    """Shared scoring and persistence: score = user vector · item vectors."""

    user_factors_: np.ndarray | None
    item_factors_: np.ndarray | None

    def _fold_in(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Known users (index >= 0) use their trained vectors; ad-hoc users are folded in from history."""
        self._require_fitted()
        assert self.user_factors_ is not None and self.item_factors_ is not None
        users = np.asarray(users)
        vectors = np.zeros((len(users), self.user_factors_.shape[1]), dtype=np.float32)
        known = users >= 0
        vectors[known] = self.user_factors_[users[known]]
        if (~known).any():
            vectors[~known] = self._fold_in([histories[int(i)] for i in np.flatnonzero(~known)])
        return vectors @ self.item_factors_.T

    def _arrays(self) -> dict[str, np.ndarray]:
        assert self.user_factors_ is not None and self.item_factors_ is not None
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors_ = arrays["user_factors"]
        self.item_factors_ = arrays["item_factors"]


@register
class ALS(_FactorModel):
    """Implicit-feedback ALS: confidence ``alpha`` on observed items, weight 1 on the rest."""

    name = "als"

    @checked()
    def __init__(self, factors: Annotated[int, Field(ge=1)] = 64, regularization: Annotated[float, Field(ge=0)] = 0.05,
                 alpha: Annotated[float, Field(gt=0)] = 10.0, iterations: Annotated[int, Field(ge=1)] = 15,
                 seed: int = 0, num_threads: Annotated[int, Field(ge=0)] = 0) -> None:
        super().__init__()
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed
        self.num_threads = num_threads
        self.user_factors_ = None
        self.item_factors_ = None

    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        with threadpool_limits(1, "blas"):  # implicit parallelises itself; nested BLAS threads slow it down
            model = AlternatingLeastSquares(factors=self.factors, regularization=self.regularization,
                                            alpha=self.alpha, iterations=self.iterations,
                                            random_state=self.seed, num_threads=self.num_threads)
            model.fit(dataset.matrix.astype(np.float32), show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def _fold_in(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        assert self.item_factors_ is not None
        return fold_in(self.item_factors_, histories, self.alpha, self.regularization)


@register
class BPR(_FactorModel):
    """Bayesian personalised ranking by SGD over (user, positive, negative) triples.

    One thread by default: implicit's multi-threaded BPR is lock-free and so not reproducible. Ad-hoc
    histories are folded in with the ALS least-squares step on BPR's item vectors (an approximation:
    BPR has no closed-form user update).
    """

    name = "bpr"

    @checked()
    def __init__(self, factors: Annotated[int, Field(ge=1)] = 64, learning_rate: Annotated[float, Field(gt=0)] = 0.01,
                 regularization: Annotated[float, Field(ge=0)] = 0.01, iterations: Annotated[int, Field(ge=1)] = 100,
                 seed: int = 0, num_threads: Annotated[int, Field(ge=0)] = 1,
                 fold_in_confidence: Annotated[float, Field(gt=0)] = 10.0) -> None:
        super().__init__()
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.seed = seed
        self.num_threads = num_threads
        self.fold_in_confidence = fold_in_confidence
        self.user_factors_ = None
        self.item_factors_ = None

    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        model = BayesianPersonalizedRanking(factors=self.factors, learning_rate=self.learning_rate,
                                            regularization=self.regularization, iterations=self.iterations,
                                            random_state=self.seed, num_threads=self.num_threads)
        model.fit(dataset.matrix.astype(np.float32), show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def _fold_in(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        assert self.item_factors_ is not None
        return fold_in(self.item_factors_, histories, self.fold_in_confidence, 0.1)



