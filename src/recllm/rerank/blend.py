"""Blending the LLM's judgement with the retriever's: weight * z(llm) + (1 - weight) * z(retriever).

The two scores live on unrelated scales (log-probabilities, list positions, dot products), so each is first
normalised over the user's candidates:

- ``"zscore"`` (default): standardised per user, (s - mean) / standard deviation (all equal: all 0). It keeps
  how much better one candidate looks than another, so a confident LLM can overrule a close retriever call.
- ``"rank"``: positions only, best 1 and worst 0 in equal steps (ties share their mean rank). Robust to
  outlying scores and the natural choice for a listwise re-ranker, whose scores are positions anyway.

Non-finite scores (an excluded item at -inf) are put just below the lowest finite one. Equal blended scores
keep the retriever order, so ``weight=0`` gives the retriever order and ``weight=1`` the LLM order.
``choose_blend_weight`` picks the weight from a grid by a validation metric the caller computes (for
example NDCG@10 of ``blend_scores`` over cached LLM results), keeping this module free of evaluation code.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from scipy.stats import rankdata

from recllm.data.itemlist import ItemList
from recllm.rerank.base import Reranker, RerankError, RerankRequest, RerankResult, check_inputs, sort_by_scores

log = logging.getLogger(__name__)

Normalize = Literal["zscore", "rank"]
DEFAULT_GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))


def normalize_scores(scores: np.ndarray, method: Normalize = "zscore") -> np.ndarray:
    """Scores of one user's candidates on a common scale (see the module docstring)."""
    values = np.array(scores, dtype=np.float64)
    if values.size == 0:
        return values
    finite = np.isfinite(values)
    if not finite.all():
        floor = values[finite].min() - 1.0 if finite.any() else 0.0
        log.debug("blend: %d non-finite scores set below the lowest finite one", int((~finite).sum()))
        values = np.where(finite, values, floor)
    if method == "zscore":
        std = values.std()
        return (values - values.mean()) / std if std > 0 else np.zeros_like(values)
    if method == "rank":
        if values.size == 1:
            return np.zeros(1)
        return (rankdata(values, method="average") - 1.0) / (values.size - 1)
    raise RerankError(f"normalize must be 'zscore' or 'rank', got {method!r}")


def blend_scores(retrieved: ItemList, reranked: ItemList, weight: float, *,
                 normalize: Normalize = "zscore") -> ItemList:
    """The candidates of ``retrieved`` ordered by weight * z(reranked score) + (1 - weight) * z(retriever score).

    ``reranked`` must hold exactly the same items (any order), as every grounded re-ranker result does.
    """
    if not 0.0 <= weight <= 1.0 or math.isnan(weight):
        raise RerankError(f"blend weight must be in [0, 1], got {weight}")
    ids = retrieved.items
    if set(reranked.items) != set(ids) or len(reranked) != len(ids):
        raise RerankError("blending needs the re-ranked list to hold exactly the retrieved candidates")
    by_item = dict(zip(reranked.items, reranked.scores, strict=True))
    llm = np.array([by_item[item] for item in ids], dtype=np.float64)
    blended = weight * normalize_scores(llm, normalize) + (1.0 - weight) * normalize_scores(retrieved.scores,
                                                                                           normalize)
    order = sort_by_scores(ids, blended)
    index = {item: i for i, item in enumerate(ids)}
    return ItemList(order, np.array([blended[index[item]] for item in order], dtype=np.float64))


class BlendedReranker(Reranker):
    """Wraps a re-ranker and blends its scores with the retriever's (the candidates' own scores).

    ``weight`` is the LLM's share (0: retriever order, 1: the re-ranker's order); ``normalize`` as in
    ``normalize_scores``. The result's ``n_ranked`` is the number of candidates (the blend scores all).
    """

    def __init__(self, reranker: Reranker, weight: float = 0.5, *, normalize: Normalize = "zscore") -> None:
        if not 0.0 <= weight <= 1.0:
            raise RerankError(f"blend weight must be in [0, 1], got {weight}")
        if normalize not in ("zscore", "rank"):
            raise RerankError(f"normalize must be 'zscore' or 'rank', got {normalize!r}")
        self.reranker = reranker
        self.weight = weight
        self.normalize = normalize

    @property
    def name(self) -> str:
        return f"blend({self.reranker.name})"

    @property
    def scores_jointly(self) -> bool:
        return self.reranker.scores_jointly

    def rerank(self, history: Sequence[str], candidates: ItemList, *, user: object | None = None) -> RerankResult:
        return self.rerank_many([RerankRequest(history, candidates, user)])[0]

    def rerank_many(self, cases: Sequence[RerankRequest]) -> list[RerankResult]:
        for case in cases:
            check_inputs(case.history, case.candidates)
        start = time.perf_counter()
        inner = self.reranker.rerank_many(cases)
        latency = time.perf_counter() - start
        results = []
        for case, result in zip(cases, inner, strict=True):
            items = blend_scores(case.candidates, result.items, self.weight, normalize=self.normalize)
            diagnostics = replace(result.diagnostics, reranker=self.name, latency_s=latency)
            results.append(RerankResult(items=items, diagnostics=diagnostics, n_ranked=len(items)))
        return results


@dataclass(frozen=True)
class BlendChoice:
    """The chosen ``weight``, its validation ``value``, and the value of every weight tried."""

    weight: float
    value: float
    values: dict[float, float]


def choose_blend_weight(evaluate: Callable[[float], float], grid: Sequence[float] = DEFAULT_GRID) -> BlendChoice:
    """The weight of ``grid`` with the highest ``evaluate(weight)`` (e.g. validation NDCG@10).

    Ties go to the weight listed first (with the default grid, the one closer to the retriever).
    """
    weights = [float(w) for w in grid]
    if not weights:
        raise RerankError("choose_blend_weight needs a non-empty grid of weights")
    bad = [w for w in weights if not 0.0 <= w <= 1.0]
    if bad:
        raise RerankError(f"blend weights must be in [0, 1], got {bad[0]}")
    values: dict[float, float] = {}
    for weight in weights:
        value = float(evaluate(weight))
        if math.isnan(value):
            raise RerankError(f"the validation metric returned NaN for weight {weight}")
        values[weight] = value
    best = max(weights, key=lambda w: (values[w], -weights.index(w)))
    log.info("blend weight %.3g chosen (validation %.4f; grid %s)", best, values[best],
             ", ".join(f"{w:g}: {v:.4f}" for w, v in values.items()))
    return BlendChoice(weight=best, value=values[best], values=values)
