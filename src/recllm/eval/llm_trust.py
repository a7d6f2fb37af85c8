"""Position bias and faithfulness of an LLM re-ranker, for the audit (issue 17).

**Position bias.** In a retriever's list the target's shown position is tied to how good the retriever thinks it
is, so NDCG by shown position mixes the LLM's position preference with the retriever's skill. The probe cuts
that tie: each user's candidates are the held-out target and the retriever's first ``n - 1`` other items, the
others in a seeded random order, the target put at a position assigned so that every position gets the same
number of users (a seeded shuffle of ``user index mod n``); every candidate carries the same retriever score.
NDCG@k of the target is then averaged per bucket of shown positions (1-5, 6-10, ...), once for one shown order
and once after aggregating ``permutations`` cyclic rotations of the shown order by Borda count
(``recllm.rerank.permutation``; rotations by ``n / permutations`` put the target once in every bucket). The
*spread* is the largest minus the smallest bucket mean over the mean of all users; 0 means the shown position
does not matter. Its 95% interval resamples users within each bucket. Bucket means of a few dozen users each
differ by chance alone, so a spread means little without its *no-effect reference*: the spread of the same users'
values dealt into buckets of the same sizes at random (a permutation test, ``rounds`` deals), whose mean and 95th
percentile the report gives beside the observed spread, with ``p``, the share of deals at least as spread. A
spread near the reference is no evidence of a position effect; telling a true spread of 10% from none needs
enough users that the reference itself falls well below 10%.

**Faithfulness.** Over the same probe lists: the re-ranker's raw and grounded hallucination rates and format
errors (``recllm.rerank.diagnostics``), and for the item it put first, the model's explanation checked by
``recllm.tasks.explain.ExplanationChecker``: the share whose every checkable claim is true (titles, years,
genres, numbers, and a reason tied to the user), and what the others got wrong.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recllm.data.catalog import ItemCatalog
from recllm.data.itemlist import ItemList
from recllm.errors import RecllmError
from recllm.llm.base import LLM
from recllm.rerank.base import Reranker, RerankResult
from recllm.rerank.diagnostics import summarize_diagnostics
from recllm.rerank.permutation import PermutationAggregator
from recllm.tasks.explain import Explainer, violation_kind

ProbeList = tuple[str, list[str], ItemList, int]
"""(user, history, candidates shown, 0-based position of the target among them)."""


@dataclass(frozen=True)
class PositionBias:
    """NDCG@k of the target by the bucket of shown positions it was put at, one order and aggregated."""

    reranker: str
    users: int
    k: int
    permutations: int
    buckets: list[str]
    counts: list[int]
    single: list[float]
    aggregated: list[float]
    mean_single: float
    mean_aggregated: float
    spread_single: float
    spread_aggregated: float
    spread_single_interval: tuple[float, float]
    spread_aggregated_interval: tuple[float, float]
    null_single: tuple[float, float] = (float("nan"), float("nan"))
    null_aggregated: tuple[float, float] = (float("nan"), float("nan"))
    p_single: float = float("nan")
    p_aggregated: float = float("nan")
    values_single: list[list[float]] = field(default_factory=list)
    values_aggregated: list[list[float]] = field(default_factory=list)
    """The no-effect reference (mean and 95th percentile of the spread when users are dealt into the buckets at
    random), the share of such deals at least as spread as observed, and each bucket's per-user NDCG values."""


@dataclass(frozen=True)
class Faithfulness:
    """What an LLM re-ranker made up, and whether the model's explanations of its first items are true."""

    reranker: str
    users: int
    diagnostics: dict[str, Any]
    explained: int
    true_share: float
    violations_per_explanation: float
    violation_kinds: dict[str, int]
    examples: list[dict[str, Any]] = field(default_factory=list)


def probe_lists(lists: Sequence[tuple[str, list[str], ItemList]], targets: Sequence[str], *, n: int = 20,
                seed: int = 0) -> list[ProbeList]:
    """Each user's target among the first ``n - 1`` other items of their list, shuffled, the target placed so
    that every position is used equally often (see the module docstring); equal retriever scores."""
    if len(lists) != len(targets):
        raise RecllmError(f"position probe: {len(lists)} lists but {len(targets)} targets")
    if n < 2:
        raise RecllmError(f"position probe: n must be at least 2, got {n}")
    rng = np.random.default_rng(seed)
    positions = rng.permutation(np.arange(len(lists)) % n)
    out = []
    for (user, history, candidates), target, position in zip(lists, targets, positions, strict=True):
        others = [item for item in candidates.items if item != target][:n - 1]
        if len(others) < n - 1:
            raise RecllmError(f"position probe: user {user} has {len(others)} candidates besides the target, "
                              f"needs {n - 1}")
        shown = [others[i] for i in rng.permutation(len(others))]
        shown.insert(int(position), target)
        out.append((user, history, ItemList(tuple(shown), np.zeros(n)), int(position)))
    return out


def _ndcg_of_target(result: RerankResult, target: str, k: int) -> float:
    rank = result.order.index(target)
    return 1.0 / float(np.log2(rank + 2)) if rank < k else 0.0


def _spread(by_bucket: list[np.ndarray]) -> float:
    means = np.asarray([b.mean() for b in by_bucket])
    overall = np.concatenate(by_bucket).mean()
    return float((means.max() - means.min()) / overall) if overall > 0 else float("nan")


def _spread_interval(by_bucket: list[np.ndarray], rng: np.random.Generator, rounds: int) -> tuple[float, float]:
    draws = [_spread([b[rng.integers(0, len(b), len(b))] for b in by_bucket]) for _ in range(rounds)]
    low, high = np.nanquantile(draws, [0.025, 0.975])
    return float(low), float(high)


def _no_effect(by_bucket: list[np.ndarray], rng: np.random.Generator, rounds: int
               ) -> tuple[tuple[float, float], float]:
    """Mean and 95th percentile of the spread when the users' values are dealt into buckets of the same sizes at
    random, and the share of deals with a spread at least the observed one (a permutation p-value)."""
    values = np.concatenate(by_bucket)
    edges = np.cumsum([len(b) for b in by_bucket])[:-1]
    observed = _spread(by_bucket)
    draws = np.array([_spread(np.split(rng.permutation(values), edges)) for _ in range(rounds)])
    if np.isnan(observed) or np.isnan(draws).all():
        return (float("nan"), float("nan")), float("nan")
    p = (1 + int(np.sum(draws >= observed - 1e-12))) / (1 + rounds)
    return (float(np.nanmean(draws)), float(np.nanquantile(draws, 0.95))), float(p)


def position_bias(reranker: Reranker, probes: Sequence[ProbeList], targets: Sequence[str], *, k: int = 10,
                  permutations: int = 4, buckets: int = 4, rounds: int = 1000, seed: int = 0
                  ) -> tuple[PositionBias, list[RerankResult]]:
    """The position probe (module docstring) on ``probes``; also returns the one-order results, whose
    diagnostics and first items the faithfulness check reads."""
    if not probes:
        raise RecllmError("position probe: no lists")
    n = len(probes[0][2])
    if buckets < 1 or n % buckets:
        raise RecllmError(f"position probe: {n} candidates do not split into {buckets} equal buckets")
    if permutations < 2:
        raise RecllmError(f"position probe: aggregation needs at least 2 permutations, got {permutations}")
    aggregator = PermutationAggregator(reranker, n_permutations=permutations, schedule="cyclic", seed=seed)
    size = n // buckets
    single: list[list[float]] = [[] for _ in range(buckets)]
    aggregated: list[list[float]] = [[] for _ in range(buckets)]
    results = []
    for (user, history, shown, position), target in zip(probes, targets, strict=True):
        one = reranker.rerank(history, shown, user=user)
        results.append(one)
        single[position // size].append(_ndcg_of_target(one, target, k))
        aggregated[position // size].append(_ndcg_of_target(aggregator.rerank(history, shown, user=user), target, k))
    empty = [f"{b * size + 1}-{(b + 1) * size}" for b in range(buckets) if not single[b]]
    if empty:
        raise RecllmError(f"position probe: no user's target was shown at positions {', '.join(empty)}; "
                          f"audit at least {n} users")
    one_order = [np.asarray(b) for b in single]
    rotated = [np.asarray(b) for b in aggregated]
    rng = np.random.default_rng(seed)
    null_single, p_single = _no_effect(one_order, rng, rounds)
    null_aggregated, p_aggregated = _no_effect(rotated, rng, rounds)
    return PositionBias(
        reranker=reranker.name, users=len(probes), k=k, permutations=permutations,
        buckets=[f"{b * size + 1}-{(b + 1) * size}" for b in range(buckets)], counts=[len(b) for b in single],
        single=[float(b.mean()) for b in one_order], aggregated=[float(b.mean()) for b in rotated],
        mean_single=float(np.concatenate(one_order).mean()), mean_aggregated=float(np.concatenate(rotated).mean()),
        spread_single=_spread(one_order), spread_aggregated=_spread(rotated),
        spread_single_interval=_spread_interval(one_order, rng, rounds),
        spread_aggregated_interval=_spread_interval(rotated, rng, rounds), null_single=null_single,
        null_aggregated=null_aggregated, p_single=p_single, p_aggregated=p_aggregated,
        values_single=[b.tolist() for b in one_order], values_aggregated=[b.tolist() for b in rotated]), results


def faithfulness(name: str, results: Sequence[RerankResult], histories: Sequence[Sequence[str]], llm: LLM,
                 catalog: ItemCatalog, *, batch: int = 8, examples: int = 3) -> Faithfulness:
    """Hallucination and format figures of ``results``, and the checked explanation of each result's first
    item for its user (``histories``: item ids, oldest first)."""
    if len(results) != len(histories):
        raise RecllmError(f"faithfulness: {len(results)} results but {len(histories)} histories")
    summary = summarize_diagnostics(r.diagnostics for r in results).to_dict()
    explainer = Explainer(llm, catalog)
    pairs = [(list(history), result.order[0]) for result, history in zip(results, histories, strict=True)
             if len(result.order)]
    explanations = [e for start in range(0, len(pairs), batch)
                    for e in explainer.explain_many(pairs[start:start + batch])]
    kinds: Counter[str] = Counter(violation_kind(v) for e in explanations for v in e.violations)
    failed = [e for e in explanations if not e.grounded]
    return Faithfulness(
        reranker=name, users=len(results), diagnostics=summary, explained=len(explanations),
        true_share=float(np.mean([e.grounded for e in explanations])) if explanations else float("nan"),
        violations_per_explanation=float(np.mean([len(e.violations) for e in explanations])) if explanations
        else float("nan"),
        violation_kinds=dict(kinds.most_common()),
        examples=[{"item": e.item, "generated": e.generated, "violations": list(e.violations)}
                  for e in failed[:examples]])
