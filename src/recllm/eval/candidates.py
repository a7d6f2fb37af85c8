"""Protocols over explicit candidate sets, (docs/protocols.md): ``sampled-N`` and ``rerank-topN``.

Both build one ``Case`` per evaluated target set: the user's history, the candidates in the order a
re-ranker is shown them, and the targets. Every ranker (a classic model, the presentation order itself,
or an LLM re-ranker) is then judged on exactly the same cases, so rows of one report compare like with like.

- ``sampled-N`` (LLMRank): each target with N-1 items drawn uniformly (seeded) from items the user never
  interacted with, shown in a seeded random order; ranks are within the N.
- ``rerank-topN`` (LlamaRec): the retriever's top N unseen items, in retriever order; a target outside the
  top N is a miss, so metrics are over the full catalog and the retriever row equals its ``full`` figure
  at every K <= N.

Ranks are 0-based; a miss gets rank ``n_items`` (beyond every cut-off).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Protocol

import numpy as np

from recllm.data.dataset import Dataset
from recllm.data.itemlist import ItemList
from recllm.data.vocabulary import Vocabulary
from recllm.distributed import contiguous_shards, map_shards
from recllm.errors import RecllmError
from recllm.eval.metrics import pessimistic_ranks, user_metrics
from recllm.eval.protocols import ProtocolResult, Queries, sample_negatives
from recllm.models.base import Recommender
from recllm.ranking import top_k
from recllm.rerank.base import Reranker, positional_scores
from recllm.rerank.diagnostics import Diagnostics, summarize_diagnostics

log = logging.getLogger(__name__)
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Case:
    """One evaluated target set: item indices of the history (oldest first), the candidates in the order
    shown, the retriever's scores for them (None for sampled candidates), and the targets."""

    user: int
    history: np.ndarray
    candidates: np.ndarray
    targets: np.ndarray
    retriever_scores: np.ndarray | None = None

    def target_position(self) -> int:
        """0-based position of the first target among the candidates as shown; -1 when none is there."""
        hits = np.flatnonzero(np.isin(self.candidates, self.targets))
        return int(hits[0]) if len(hits) else -1


@dataclass(frozen=True)
class Cases:
    """The cases of one protocol run, with its name and the catalog size misses are ranked at."""

    protocol: str
    cases: tuple[Case, ...]
    n_items: int

    def __len__(self) -> int:
        return len(self.cases)


def select_users(queries: Queries, max_users: int | None, seed: int) -> Queries:
    """At most ``max_users`` of the queries, drawn without replacement by ``seed`` and kept in user order."""
    if max_users is None or max_users >= len(queries.users):
        return queries
    if max_users < 1:
        raise RecllmError(f"the number of users to evaluate must be positive, got {max_users}")
    rows = np.sort(np.random.default_rng(seed).choice(len(queries.users), size=max_users, replace=False))
    return Queries(queries.users[rows], [queries.histories[r] for r in rows], [queries.targets[r] for r in rows])


def sampled_cases(queries: Queries, *, n: int, seen_sequences: Callable[[int], np.ndarray], n_items: int,
                  seed: int = 0) -> Cases:
    """``sampled-N``: per target, the target and N-1 uniform unseen negatives in a seeded random order.

    ``seen_sequences(user)`` gives every item the user interacted with (in the whole dataset), never sampled.
    """
    if n < 2 or n > n_items:
        raise RecllmError(f"sampled-N needs 2 <= N <= {n_items} items, got N={n}")
    rng = np.random.default_rng(seed)
    cases: list[Case] = []
    for user, history, targets in zip(queries.users, queries.histories, queries.targets, strict=True):
        negatives = sample_negatives(rng, seen_sequences(int(user)), n - 1, n_items)
        for target in targets:
            pool = rng.permutation(np.concatenate([[target], negatives]).astype(np.int64))
            cases.append(Case(int(user), np.asarray(history, dtype=np.int64), pool,
                              np.array([target], dtype=np.int64)))
    return Cases(f"sampled-{n}", tuple(cases), n_items)


def top_n_cases(retriever: Recommender, queries: Queries, *, n: int, batch_size: int = 256) -> Cases:
    """``rerank-topN``: the retriever's top ``n`` unseen items per user, best first, with their scores."""
    n_items = retriever.n_items
    if n < 1 or n > n_items:
        raise RecllmError(f"rerank-topN needs 1 <= N <= {n_items} items, got N={n}")
    cases: list[Case] = []
    for start in range(0, len(queries.users), batch_size):
        stop = min(start + batch_size, len(queries.users))
        histories = queries.histories[start:stop]
        scores = retriever.score(queries.users[start:stop], histories).astype(np.float64)
        for row, seen in enumerate(histories):
            scores[row, seen] = -np.inf
        tops = top_k(scores, n)
        for row in range(stop - start):
            cases.append(Case(int(queries.users[start + row]), np.asarray(histories[row], dtype=np.int64),
                              tops[row].astype(np.int64), np.asarray(queries.targets[start + row], dtype=np.int64),
                              scores[row, tops[row]]))
    return Cases(f"rerank-top{n}", tuple(cases), n_items)


@dataclass
class RankerOutcome:
    """What one ranker did on a ``Cases``: the metrics, per-case figures and (for LLMs) diagnostics.

    ``per_case`` holds the per-user metric arrays plus ``target_position`` (where the target was shown,
    0-based) and ``top1`` (item index ranked first), the raw material of the position and popularity bias
    tables. ``diagnostics`` is the summary of every call (None for rankers without an LLM).
    """

    name: str
    result: ProtocolResult
    per_case: dict[str, np.ndarray]
    diagnostics: dict[str, object] | None = None
    records: list[Diagnostics] = field(default_factory=list, repr=False)


def ranks_from_order(order: np.ndarray, targets: np.ndarray, n_items: int) -> np.ndarray:
    """0-based rank of each target in ``order`` (best first); ``n_items`` for a target not in it."""
    where = {int(item): i for i, item in enumerate(order)}
    return np.array([where.get(int(t), n_items) for t in targets], dtype=np.int64)


def _outcome(name: str, cases: Cases, ranks: list[np.ndarray], top1: list[int], ks: Sequence[int],
             seconds: float, records: list[Diagnostics] | None = None) -> RankerOutcome:
    per_case: dict[str, np.ndarray] = {}
    for k in ks:
        per_case.update(user_metrics(ranks, k))
    metrics = {key: float(values.mean()) for key, values in per_case.items()} if ranks else {}
    result = ProtocolResult(cases.protocol, metrics, len(ranks), seconds, dict(per_case))
    per_case["target_position"] = np.array([c.target_position() for c in cases.cases], dtype=np.int64)
    per_case["top1"] = np.array(top1, dtype=np.int64)
    diagnostics = summarize_diagnostics(records).to_dict() if records else None
    return RankerOutcome(name, result, per_case, diagnostics, list(records or []))


def evaluate_order(cases: Cases, *, ks: Sequence[int] = (10,), name: str = "shown order") -> RankerOutcome:
    """The candidates as shown: random order for ``sampled-N``, the retriever itself for ``rerank-topN``."""
    started = time.perf_counter()
    ranks = [ranks_from_order(c.candidates, c.targets, cases.n_items) for c in cases.cases]
    top1 = [int(c.candidates[0]) for c in cases.cases]
    return _outcome(name, cases, ranks, top1, ks, time.perf_counter() - started)


def evaluate_scorer(model: Recommender, cases: Cases, *, ks: Sequence[int] = (10,), name: str | None = None,
                    batch_size: int = 256) -> RankerOutcome:
    """A classic model ranking each case's candidates by its own scores (ties pessimistic)."""
    started = time.perf_counter()
    ranks: list[np.ndarray] = []
    top1: list[int] = []
    for start in range(0, len(cases), batch_size):
        batch = cases.cases[start:start + batch_size]
        scores = model.score(np.array([c.user for c in batch], dtype=np.int64),
                             [c.history for c in batch]).astype(np.float64)
        for row, case in enumerate(batch):
            pool = scores[row, case.candidates]
            inside = np.isin(case.targets, case.candidates)
            positions = np.array([int(np.flatnonzero(case.candidates == t)[0]) if hit else -1
                                  for t, hit in zip(case.targets, inside, strict=True)])
            rank = np.full(len(case.targets), cases.n_items, dtype=np.int64)
            if inside.any():
                rank[inside] = pessimistic_ranks(np.repeat(pool[None, :], int(inside.sum()), axis=0),
                                                 positions[inside])
            ranks.append(rank)
            top1.append(int(case.candidates[int(np.argmax(pool))]))
    return _outcome(name or model.name, cases, ranks, top1, ks, time.perf_counter() - started)


def evaluate_sampled(model: Recommender, queries: Queries, *, n: int, seen: Dataset, seed: int = 0,
                     ks: Sequence[int] = (10,)) -> ProtocolResult:
    """``sampled-N`` for a classic model: each target against N-1 uniform (seeded) items the user never
    interacted with in ``seen`` (the whole dataset), ranked among those N only."""
    cases = sampled_cases(queries, n=n, seen_sequences=seen.sequence, n_items=model.n_items, seed=seed)
    return evaluate_scorer(model, cases, ks=ks).result


class RerankerSource(Protocol):
    """What a Ray worker builds its re-ranker from (``recllm.eval.runner.RerankerRecipe``): a loaded model does
    not travel between processes, the names and options that build it do."""

    @property
    def name(self) -> str:
        """The name the built re-ranker will report, known without building it."""

    def build(self) -> Reranker:
        """The re-ranker, built once per process."""


def rerank_shard(part: Cases, source: Reranker | RerankerSource, item_vocab: Vocabulary,
                 user_vocab: Vocabulary | None = None, progress: Progress | None = None
                 ) -> tuple[list[np.ndarray], list[int], list[Diagnostics]]:
    """(target ranks, item ranked first, diagnostics) of every case of ``part``, in order: the work of one
    shard, here or in a Ray worker (``source`` a re-ranker, or a recipe the worker builds it from)."""
    reranker = source if isinstance(source, Reranker) else source.build()
    ranks: list[np.ndarray] = []
    top1: list[int] = []
    records: list[Diagnostics] = []
    for case in part.cases:
        ids = tuple(item_vocab.lookup_ids(case.candidates))
        scores = (case.retriever_scores if case.retriever_scores is not None
                  else positional_scores(len(ids)))
        history = item_vocab.lookup_ids(case.history)
        result = reranker.rerank(history, ItemList(ids, np.asarray(scores, dtype=np.float64)),
                                 user=None if user_vocab is None else user_vocab.id(case.user))
        order = np.array([item_vocab.index(i) for i in result.order], dtype=np.int64)
        ranks.append(ranks_from_order(order, case.targets, part.n_items))
        top1.append(int(order[0]))
        records.append(result.diagnostics)
        if progress:
            progress(1)
    return ranks, top1, records


def split_cases(cases: Cases, shards: int) -> list[Cases]:
    """``cases`` in at most ``shards`` contiguous, non-empty parts of near-equal size, in order."""
    return [Cases(cases.protocol, tuple(part), cases.n_items) for part in contiguous_shards(cases.cases, shards)]


def evaluate_reranker(reranker: Reranker | RerankerSource, cases: Cases, item_vocab: Vocabulary, *,
                      user_vocab: Vocabulary | None = None, ks: Sequence[int] = (10,), name: str | None = None,
                      progress: Progress | None = None, shards: int = 1, ray: ModuleType | None = None
                      ) -> RankerOutcome:
    """An LLM re-ranker on every case: ranks of the grounded result, and the diagnostics of every call.

    Candidates reach the re-ranker as external ids with the retriever's scores (positional scores for
    sampled candidates, which have none), so blending re-rankers see real retriever scores. ``user_vocab``
    turns user indices into the ids prompts use (it keeps a user out of their own few-shot demonstrations).

    With ``ray`` the cases go out in ``shards`` contiguous shards as Ray tasks (``reranker`` is then best a
    recipe, which each worker builds once); the per-case results are put back in case order, so ranks,
    metrics and every diagnostic equal those of the run in this process, except the work counters (timings,
    tokens read and model calls, which depend on what each process's caches held).
    """
    started = time.perf_counter()
    if ray is None and shards == 1:
        ranks, top1, records = rerank_shard(cases, reranker, item_vocab, user_vocab, progress)
    else:
        results = map_shards(rerank_shard, split_cases(cases, shards), shared=(reranker, item_vocab, user_vocab),
                             ray=ray)
        ranks = [r for result in results for r in result[0]]
        top1 = [t for result in results for t in result[1]]
        records = [d for result in results for d in result[2]]
        if progress:
            progress(len(cases))
    outcome = _outcome(name or reranker.name, cases, ranks, top1, ks, time.perf_counter() - started, records)
    summary = outcome.diagnostics or {}
    log.info("%s: %s; hallucination rate %.3f (grounded %.3f), p50 %.2f s", outcome.name,
             {k: round(v, 4) for k, v in outcome.result.metrics.items()}, summary.get("hallucination_rate", 0.0),
             summary.get("grounded_hallucination_rate", 0.0), summary.get("latency_p50_s", 0.0))
    return outcome


def popularity_percentiles(popularity: np.ndarray) -> np.ndarray:
    """Each item's popularity as a percentile of the catalog (0 = least, 100 = most popular; ties averaged)."""
    from scipy.stats import rankdata

    pop = np.asarray(popularity, dtype=np.float64)
    if len(pop) < 2:
        return np.full(len(pop), 50.0)
    return (rankdata(pop, method="average") - 1.0) / (len(pop) - 1.0) * 100.0


def position_breakdown(outcome: RankerOutcome, metric: str, n_candidates: int, groups: int = 4
                       ) -> dict[str, float]:
    """Mean ``metric`` by where the target was shown, in ``groups`` equal bands of positions (1-based)."""
    values = outcome.per_case[metric]
    positions = outcome.per_case["target_position"]
    bounds = np.linspace(0, n_candidates, groups + 1).round().astype(int)
    out: dict[str, float] = {}
    for lo, hi in itertools.pairwise(bounds):
        mask = (positions >= lo) & (positions < hi)
        out[f"{lo + 1}-{hi}"] = float(values[mask].mean()) if mask.any() else float("nan")
    return out
