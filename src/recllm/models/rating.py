"""Rating predictors for the `rating` protocol: global mean and regularised user/item biases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import numpy as np
from pydantic import Field

from recllm.config import checked
from recllm.data.dataset import Dataset
from recllm.data.vocabulary import Vocabulary
from recllm.errors import NotFittedError, RecllmError
from recllm.registry import Registry


class BiasedBaseline:
    """r(u, i) = mu + b_u + b_i, biases fitted by alternating regularised averages (Koren 2010, eq. 2).

    ``user_reg = item_reg = 0`` with ``iterations = 0`` reduces it to the global mean. Unknown users or
    items fall back to the parts that are known.
    """

    name = "bias"

    @checked()
    def __init__(self, user_reg: Annotated[float, Field(ge=0)] = 10.0, item_reg: Annotated[float, Field(ge=0)] = 25.0,
                 iterations: Annotated[int, Field(ge=0)] = 10) -> None:
        self.user_reg = user_reg
        self.item_reg = item_reg
        self.iterations = iterations
        self.mean_: float | None = None
        self.user_bias_: np.ndarray | None = None
        self.item_bias_: np.ndarray | None = None
        self.user_vocab: Vocabulary | None = None
        self.item_vocab: Vocabulary | None = None

    def fit(self, dataset: Dataset) -> BiasedBaseline:
        if dataset.ratings is None:
            raise RecllmError(f"{dataset.name} has no ratings to fit a rating predictor on")
        r = dataset.ratings.astype(np.float64)
        self.mean_ = float(r.mean())
        bu = np.zeros(dataset.n_users)
        bi = np.zeros(dataset.n_items)
        for _ in range(self.iterations):
            resid = r - self.mean_ - bu[dataset.users]
            bi = np.bincount(dataset.items, resid, dataset.n_items) / (
                np.bincount(dataset.items, minlength=dataset.n_items) + self.item_reg)
            resid = r - self.mean_ - bi[dataset.items]
            bu = np.bincount(dataset.users, resid, dataset.n_users) / (
                np.bincount(dataset.users, minlength=dataset.n_users) + self.user_reg)
        self.user_bias_, self.item_bias_ = bu, bi
        self.user_vocab, self.item_vocab = dataset.user_vocab, dataset.item_vocab
        return self

    def predict(self, users: Sequence[str | int], items: Sequence[str | int]) -> np.ndarray:
        """Predicted ratings for (user id, item id) pairs."""
        if self.mean_ is None or self.user_vocab is None or self.item_vocab is None:
            raise NotFittedError("rating predictor is not fitted")
        assert self.user_bias_ is not None and self.item_bias_ is not None
        u = self.user_vocab.indices(users, missing="mark")
        i = self.item_vocab.indices(items, missing="mark")
        return self.predict_indices(u, i)

    def predict_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        assert self.mean_ is not None and self.user_bias_ is not None and self.item_bias_ is not None
        bu = np.where(users >= 0, self.user_bias_[np.maximum(users, 0)], 0.0)
        bi = np.where(items >= 0, self.item_bias_[np.maximum(items, 0)], 0.0)
        return self.mean_ + bu + bi


class GlobalMean(BiasedBaseline):
    """Every rating predicted as the training mean: the floor for RMSE/MAE."""

    name = "global-mean"

    def __init__(self) -> None:
        super().__init__(user_reg=0.0, item_reg=0.0, iterations=0)


RATING_PREDICTORS: Registry[type[BiasedBaseline]] = Registry("rating predictor", "recllm.rating_predictors")
"""Rating predictors for the ``rating`` protocol, by name (plugins: the ``recllm.rating_predictors`` group)."""
RATING_PREDICTORS.register("bias", BiasedBaseline)
RATING_PREDICTORS.register("global-mean", GlobalMean)
