"""Evaluation protocols named in DESIGN.md: ``full``, ``sampled-N`` and ``rating``.

Every function returns metric means plus the counts that make them interpretable (users evaluated,
seconds spent). Ranks are pessimistic on ties, so constant scores cannot look good.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from recllm.data.dataset import Dataset
from recllm.data.splits import Split
from recllm.errors import RecllmError
from recllm.eval.metrics import (
    average_popularity,
    catalog_coverage,
    mae,
    pessimistic_ranks,
    rmse,
    user_metrics,
)
from recllm.models.base import Recommender
from recllm.models.rating import BiasedBaseline
from recllm.ranking import top_k

log = logging.getLogger(__name__)
Progress = Callable[[int], None]


@dataclass
class ProtocolResult:
    protocol: str
    metrics: dict[str, float]
    n_users: int
    seconds: float
    per_user: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def seconds_per_1k_users(self) -> float:
        return 1000.0 * self.seconds / self.n_users if self.n_users else 0.0


@dataclass(frozen=True)
class Queries:
    """Users to evaluate, each with the history a model may use and the held-out targets."""

    users: np.ndarray
    histories: list[np.ndarray]
    targets: list[np.ndarray]


def build_queries(history: Dataset, holdout: Dataset) -> Queries:
    """Group ``holdout`` by user; histories come from ``history`` in time order (oldest first)."""
    if len(holdout) == 0:
        raise RecllmError("the evaluation set is empty")
    order = np.argsort(holdout.users, kind="stable")
    users, starts = np.unique(holdout.users[order], return_index=True)
    bounds = [*starts[1:], len(order)]
    targets = [holdout.items[order[s:e]] for s, e in zip(starts, bounds, strict=True)]
    histories = [history.sequence(u) for u in users]
    return Queries(users.astype(np.int64), histories, targets)


def _masked_scores(model: Recommender, users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    scores = model.score(users, histories).astype(np.float64)
    for row, seen in enumerate(histories):
        scores[row, seen] = -np.inf
    return scores


def evaluate_full(model: Recommender, queries: Queries, *, ks: tuple[int, ...] = (10,),
                  popularity: np.ndarray | None = None, batch_size: int = 256,
                  progress: Progress | None = None) -> ProtocolResult:
    """``full``: rank every item the user has not interacted with (history items excluded)."""
    n_items = model.n_items
    started = time.perf_counter()
    all_ranks: list[np.ndarray] = []
    tops: list[np.ndarray] = []
    kmax = max(ks)
    for start in range(0, len(queries.users), batch_size):
        stop = min(start + batch_size, len(queries.users))
        users = queries.users[start:stop]
        histories = queries.histories[start:stop]
        scores = _masked_scores(model, users, histories)
        tops.append(top_k(scores, kmax))
        for row, targets in enumerate(queries.targets[start:stop]):
            all_ranks.append(pessimistic_ranks(np.repeat(scores[row:row + 1], len(targets), axis=0), targets))
        if progress:
            progress(stop - start)
    seconds = time.perf_counter() - started
    top_lists = np.concatenate(tops) if tops else np.zeros((0, kmax), dtype=np.int64)
    return _summarise("full", all_ranks, ks, seconds, top_lists, n_items, popularity)


def evaluate_sampled(model: Recommender, queries: Queries, *, n: int, seen: Dataset, seed: int = 0,
                     ks: tuple[int, ...] = (10,), batch_size: int = 256,
                     progress: Progress | None = None) -> ProtocolResult:
    """``sampled-N``: each target against N-1 items drawn uniformly (seeded) from items the user never
    interacted with in ``seen`` (the whole dataset), ranked among those N only."""
    n_items = model.n_items
    if n < 2 or n > n_items:
        raise RecllmError(f"sampled-N needs 2 <= N <= {n_items} items, got N={n}")
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    all_ranks: list[np.ndarray] = []
    for start in range(0, len(queries.users), batch_size):
        stop = min(start + batch_size, len(queries.users))
        users = queries.users[start:stop]
        scores = model.score(users, queries.histories[start:stop]).astype(np.float64)
        for row, (user, targets) in enumerate(zip(users, queries.targets[start:stop], strict=True)):
            negatives = sample_negatives(rng, seen.sequence(int(user)), n - 1, n_items)
            for target in targets:
                pool = np.concatenate([[target], negatives])
                all_ranks.append(pessimistic_ranks(scores[row:row + 1, pool], np.array([0])))
        if progress:
            progress(stop - start)
    seconds = time.perf_counter() - started
    return _summarise(f"sampled-{n}", all_ranks, ks, seconds, None, n_items, None)


def sample_negatives(rng: np.random.Generator, interacted: np.ndarray, count: int, n_items: int) -> np.ndarray:
    """``count`` distinct items outside ``interacted``, uniformly."""
    allowed = np.ones(n_items, dtype=bool)
    allowed[interacted] = False
    pool = np.flatnonzero(allowed)
    if len(pool) < count:
        raise RecllmError(f"only {len(pool)} unseen items to sample {count} negatives from")
    return rng.choice(pool, size=count, replace=False)


def evaluate_rating(predictor: BiasedBaseline, holdout: Dataset) -> ProtocolResult:
    """``rating``: RMSE and MAE of predicted against held-out ratings."""
    if holdout.ratings is None:
        raise RecllmError(f"{holdout.name}: the evaluation set has no ratings")
    started = time.perf_counter()
    predicted = predictor.predict_indices(holdout.users.astype(np.int64), holdout.items.astype(np.int64))
    seconds = time.perf_counter() - started
    metrics = {"RMSE": rmse(predicted, holdout.ratings), "MAE": mae(predicted, holdout.ratings)}
    return ProtocolResult("rating", metrics, len(np.unique(holdout.users)), seconds)


def _summarise(protocol: str, ranks: list[np.ndarray], ks: tuple[int, ...], seconds: float,
               top_lists: np.ndarray | None, n_items: int, popularity: np.ndarray | None) -> ProtocolResult:
    per_user: dict[str, np.ndarray] = {}
    for k in ks:
        per_user.update(user_metrics(ranks, k))
    metrics = {name: float(values.mean()) for name, values in per_user.items()}
    if top_lists is not None:
        for k in ks:
            metrics[f"Coverage@{k}"] = catalog_coverage(top_lists[:, :k], n_items)
            if popularity is not None:
                metrics[f"ARP@{k}"] = average_popularity(top_lists[:, :k], popularity)
    return ProtocolResult(protocol, metrics, len(ranks), seconds, per_user)


def queries_for_validation(split: Split) -> Queries:
    return build_queries(split.train, split.valid)


def queries_for_test(split: Split) -> Queries:
    return build_queries(split.test_history(), split.test)
