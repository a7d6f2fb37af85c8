"""Permutation aggregation against position bias: re-rank several shuffles of the candidates and vote.

LLMs favour candidates by where they are shown (often the first ones). Running the re-ranker on several
orders of the same candidates and aggregating the rankings makes each candidate's result depend less on
its place (Hou et al., LLMRank, bootstrapping). Orders are seeded and the same for every user, so results
are reproducible:

- ``schedule="random"``: ``n_permutations`` random shuffles from ``seed``;
- ``schedule="cyclic"``: rotations of the retriever order spread evenly; with ``n_permutations`` equal to
  the number of candidates every candidate is shown exactly once at every position, so a purely positional
  preference cancels exactly.

Aggregation (``method``):

- ``"borda"``: in each run a candidate the model placed at position r (0-based) of n gets n - r points; a
  candidate the model left out (filled in by grounding) gets none; scores are the summed points.
- ``"mean-rank"``: the mean position over runs, filled positions included; scores are minus that mean.

With complete rankings (every scoring re-ranker) the two orders agree, as points are n minus the position;
they differ when a listwise model leaves candidates out. Ties keep the retriever order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Literal

import numpy as np

from recllm.data.itemlist import ItemList
from recllm.rerank.base import Reranker, RerankError, RerankResult, check_inputs, sort_by_scores
from recllm.rerank.diagnostics import Diagnostics

log = logging.getLogger(__name__)

Method = Literal["borda", "mean-rank"]
Schedule = Literal["random", "cyclic"]


class PermutationAggregator(Reranker):
    """Wraps a re-ranker: ``n_permutations`` seeded orders of the candidates, aggregated by ``method``.

    Diagnostics of the runs are summed into one record per user; its latency is the wall time of all runs.
    """

    def __init__(self, reranker: Reranker, n_permutations: int = 5, method: Method = "borda", seed: int = 0,
                 *, schedule: Schedule = "random") -> None:
        if n_permutations < 1:
            raise RerankError(f"n_permutations must be positive, got {n_permutations}")
        if method not in ("borda", "mean-rank"):
            raise RerankError(f"method must be 'borda' or 'mean-rank', got {method!r}")
        if schedule not in ("random", "cyclic"):
            raise RerankError(f"schedule must be 'random' or 'cyclic', got {schedule!r}")
        self.reranker = reranker
        self.n_permutations = n_permutations
        self.method = method
        self.seed = seed
        self.schedule = schedule

    @property
    def name(self) -> str:
        return f"permutation({self.reranker.name})"

    def permutations(self, n: int) -> list[np.ndarray]:
        """The candidate orders shown, as index arrays into the retriever order (the same for every user)."""
        if self.schedule == "cyclic":
            offsets = [(k * n) // self.n_permutations for k in range(self.n_permutations)]
            return [np.roll(np.arange(n), -offset) for offset in offsets]
        rng = np.random.default_rng(self.seed)
        return [rng.permutation(n) for _ in range(self.n_permutations)]

    def rerank(self, history: Sequence[str], candidates: ItemList, *, user: object | None = None) -> RerankResult:
        history = check_inputs(history, candidates)
        start = time.perf_counter()
        ids = candidates.items
        runs: list[RerankResult] = []
        for perm in self.permutations(len(ids)):
            shown = ItemList(tuple(ids[i] for i in perm), candidates.scores[perm],
                             None if candidates.explanations is None
                             else tuple(candidates.explanations[i] for i in perm))
            runs.append(self.reranker.rerank(history, shown, user=user))
        scores = aggregate_rankings([(r.order, r.n_ranked) for r in runs], ids, method=self.method)
        order = sort_by_scores(ids, scores)
        index = {item: i for i, item in enumerate(ids)}
        placed = {item for r in runs for item in r.order[:r.n_ranked]}
        n_ranked = 0
        while n_ranked < len(order) and order[n_ranked] in placed:
            n_ranked += 1
        diagnostics = Diagnostics.combine([r.diagnostics for r in runs], reranker=self.name,
                                          latency_s=time.perf_counter() - start) if runs else Diagnostics(
            reranker=self.name, model="", backend="", n_candidates=0, latency_s=time.perf_counter() - start)
        items = ItemList(order, np.array([scores[index[item]] for item in order], dtype=np.float64))
        return RerankResult(items=items, diagnostics=diagnostics, n_ranked=n_ranked)


def aggregate_rankings(rankings: Sequence[tuple[Sequence[str], int]], candidates: Sequence[str], *,
                       method: Method = "borda") -> np.ndarray:
    """Aggregate scores (higher is better) of ``candidates`` from complete rankings.

    Each ranking is ``(order, n_ranked)``: every candidate once, best first, the first ``n_ranked`` placed by
    the model. See the module docstring for the Borda and mean-rank rules.
    """
    n = len(candidates)
    index = {str(item): i for i, item in enumerate(candidates)}
    points = np.zeros(n, dtype=np.float64)
    positions = np.zeros(n, dtype=np.float64)
    for order, n_ranked in rankings:
        if len(order) != n or set(order) != set(index):
            raise RerankError("every ranking to aggregate must hold exactly the candidates")
        for position, item in enumerate(order):
            i = index[str(item)]
            positions[i] += position
            if position < n_ranked:
                points[i] += n - position
    if method == "borda":
        return points
    if method == "mean-rank":
        return -positions / max(len(rankings), 1)
    raise RerankError(f"method must be 'borda' or 'mean-rank', got {method!r}")
