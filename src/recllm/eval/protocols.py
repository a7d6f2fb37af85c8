"""Evaluation protocols (docs/protocols.md): ``full`` and ``rating`` (``sampled-N`` and ``rerank-topN``, which
rank explicit candidate sets, are in ``recllm.eval.candidates``).

Every function returns metric means plus the counts that make them interpretable (users evaluated,
seconds spent). Ranks are pessimistic on ties, so constant scores cannot look good.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from recllm.data.dataset import Dataset
from recllm.data.splits import Split
from recllm.distributed import map_shards
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


def masked_scores(model: Recommender, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
    """The model's scores (float64) for ``users`` with each user's history items set to -inf."""
    scores = model.score(users, histories).astype(np.float64)
    for row, seen in enumerate(histories):
        scores[row, seen] = -np.inf
    return scores


def evaluate_full(model: Recommender, queries: Queries, *, ks: tuple[int, ...] = (10,),
                  popularity: np.ndarray | None = None, batch_size: int = 256,
                  progress: Progress | None = None, shards: int = 1, ray: ModuleType | None = None) -> ProtocolResult:
    """``full``: rank every item the user has not interacted with (history items excluded).

    ``shards`` > 1 splits the users into contiguous shards of whole batches (as Ray tasks with ``ray``); the
    model then scores exactly the batches of the unsharded run, so every rank and metric is the same.
    """
    n_items = model.n_items
    started = time.perf_counter()
    kmax = max(ks)
    if shards == 1 and ray is None:
        all_ranks, tops = _full_shard(queries, model, kmax, batch_size, progress)
    else:
        results = map_shards(_full_shard, _batch_shards(queries, shards, batch_size),
                             shared=(model, kmax, batch_size), ray=ray)
        all_ranks = [r for ranks, _ in results for r in ranks]
        tops = [t for _, top in results for t in top]
        if progress:
            progress(len(queries.users))
    seconds = time.perf_counter() - started
    top_lists = np.concatenate(tops) if tops else np.zeros((0, kmax), dtype=np.int64)
    return _summarise("full", all_ranks, ks, seconds, top_lists, n_items, popularity)


def _full_shard(queries: Queries, model: Recommender, kmax: int, batch_size: int, progress: Progress | None = None
                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(ranks of each user's targets, top-``kmax`` item blocks) for ``queries``, in batches of ``batch_size``."""
    all_ranks: list[np.ndarray] = []
    tops: list[np.ndarray] = []
    for start in range(0, len(queries.users), batch_size):
        stop = min(start + batch_size, len(queries.users))
        users = queries.users[start:stop]
        histories = queries.histories[start:stop]
        scores = masked_scores(model, users, histories)
        tops.append(top_k(scores, kmax))
        for row, targets in enumerate(queries.targets[start:stop]):
            all_ranks.append(pessimistic_ranks(np.repeat(scores[row:row + 1], len(targets), axis=0), targets))
        if progress:
            progress(stop - start)
    return all_ranks, tops


def _batch_shards(queries: Queries, shards: int, batch_size: int) -> list[Queries]:
    """``queries`` in at most ``shards`` contiguous parts, each a whole number of batches of ``batch_size``."""
    if shards < 1:
        raise RecllmError(f"shards must be at least 1, got {shards}")
    batches = -(-len(queries.users) // batch_size)
    bounds = np.linspace(0, batches, min(shards, max(1, batches)) + 1).round().astype(int) * batch_size
    parts = []
    for lo, hi in itertools.pairwise(bounds):
        hi = min(int(hi), len(queries.users))
        if hi > lo:
            parts.append(Queries(queries.users[lo:hi], queries.histories[lo:hi], queries.targets[lo:hi]))
    return parts


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
