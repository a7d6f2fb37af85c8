"""ItemKNN: cosine item-item similarity with shrinkage, keeping each item's top neighbours."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from recllm.config import checked
from recllm.data.dataset import Dataset
from recllm.models.base import Recommender, history_matrix, register


@register
class ItemKNN(Recommender):
    """sim(i, j) = |U_i ∩ U_j| / (sqrt(|U_i| |U_j|) + shrink); score(u, j) = sum over history i of sim(i, j)."""

    name = "itemknn"

    @checked()
    def __init__(self, neighbors: Annotated[int, Field(ge=1)] = 100,
                 shrink: Annotated[float, Field(ge=0)] = 10.0) -> None:
        super().__init__()
        self.neighbors = neighbors
        self.shrink = shrink
        self.similarity_: sp.csr_matrix | None = None

    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        x = dataset.matrix.astype(np.float32)
        co = (x.T @ x).toarray()
        norms = np.sqrt(np.diag(co)).astype(np.float32)
        sim = co / (np.outer(norms, norms) + self.shrink + 1e-12)
        np.fill_diagonal(sim, 0.0)
        self.similarity_ = _keep_top(sim, self.neighbors)

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        self._require_fitted()
        assert self.similarity_ is not None
        return np.asarray((history_matrix(histories, self.n_items) @ self.similarity_).toarray(),
                          dtype=np.float32)

    def _arrays(self) -> dict[str, np.ndarray]:
        assert self.similarity_ is not None
        s = self.similarity_
        return {"data": s.data.astype(np.float32), "indices": s.indices.astype(np.int32),
                "indptr": s.indptr.astype(np.int64)}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        n = self.n_items
        self.similarity_ = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=(n, n))


def _keep_top(sim: np.ndarray, k: int) -> sp.csr_matrix:
    """Keep the k largest positive entries of each row (row i = neighbours of source item i)."""
    n = sim.shape[0]
    k = min(k, n - 1) if n > 1 else 0
    if k <= 0:
        return sp.csr_matrix((n, n), dtype=np.float32)
    cols = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(sim, cols, axis=1)
    rows = np.repeat(np.arange(n), k)
    keep = vals.ravel() > 0
    out = sp.csr_matrix((vals.ravel()[keep], (rows[keep], cols.ravel()[keep])), shape=(n, n), dtype=np.float32)
    out.sort_indices()
    return out
