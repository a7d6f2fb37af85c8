"""``recllm audit`` for retrievers: accuracy by user group, item exposure, popularity bias and robustness.

Every model is fitted on the training part of one split and ranks the whole catalog (``full`` protocol,
history items excluded) for the same seeded test users. Per model the audit keeps:

- NDCG@k and HR@k per group of every user attribute the data has (``user_groups``), with bootstrap 95%
  intervals and the largest gap between groups (``recllm.eval.fairness.group_metric``), tested by permutation
  and Holm-adjusted over the model's attributes and both metrics;
- exposure of the top-k lists: Gini over all catalog items, the long tail's share (items outside the most
  popular 20%), catalog coverage;
- popularity bias: the training-popularity percentile of the item ranked first and of the top k, against
  that of the held-out targets;
- robustness: the same users scored from their history alone (as ad-hoc users, so models that keep a
  per-user factor cannot ignore it), with and without its oldest 10% (at least one item): overlap@k of the
  two top-k lists and Kendall's tau of the two score vectors over the union of both lists.

With ``mitigations``, every model's top ``POOL`` items are re-ordered into a new top k by each mitigation of
``recllm.rerank.mitigation`` (popularity calibration at weight 0.5, a 30% long-tail quota, a popularity penalty
at the weight ``choose_penalty_weight`` picks on validation users) and audited again as rows
"MODEL + MITIGATION", so each mitigation's cost in NDCG stands beside its effect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from recllm.data.bundle import DataBundle
from recllm.data.catalog import ItemCatalog
from recllm.data.itemlist import ItemList
from recllm.data.splits import Split
from recllm.data.vocabulary import Vocabulary
from recllm.errors import RecllmError
from recllm.eval.candidates import select_users
from recllm.eval.fairness import (
    GroupReport,
    coverage,
    exposure_counts,
    gini,
    group_metric,
    holm_adjust,
    kendall_tau,
    long_tail_share,
    overlap_at_k,
    paired_difference,
)
from recllm.eval.llm_robustness import LLMRobustnessReport, llm_robustness
from recllm.eval.llm_trust import Faithfulness, PositionBias, faithfulness, position_bias, probe_lists
from recllm.eval.metrics import user_metrics
from recllm.eval.protocols import Queries, masked_scores, queries_for_test, queries_for_validation
from recllm.eval.report import machine_info
from recllm.eval.sensitivity import FAIRLLM_VALUES, MOVIELENS_ATTRIBUTES, SensitivityReport, prompt_sensitivity
from recllm.llm.base import LLM
from recllm.models.base import Recommender
from recllm.pipeline import build_retriever
from recllm.ranking import pessimistic_ranks, top_k
from recllm.rerank.base import Reranker, RerankRequest
from recllm.rerank.mitigation import (
    MITIGATIONS,
    PopularityBins,
    first_under_penalties,
    mitigate,
)

log = logging.getLogger(__name__)

AGE_BRACKETS = ((18, "Under 18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (50, "45-49"), (56, "50-55"),
                (10_000, "56+"))
"""MovieLens-1M's age brackets (upper bound exclusive, label), used for any numeric ``age`` column."""
MAX_GROUPS = 30
"""A text attribute with more distinct values than this (a zip code, an id) is not a grouping."""
TAIL_HEAD = 0.2
POOL = 100
"""Candidates (a model's top items) a mitigation re-orders into the top k."""
CALIBRATION_WEIGHT = 0.5
TAIL_QUOTA = 0.3


@dataclass(frozen=True)
class UserGroups:
    """Each usable attribute's group label per user (None: unknown), and why other columns were left out."""

    labels: dict[str, list[str | None]]
    skipped: dict[str, str] = field(default_factory=dict)


def _age_bracket(age: float) -> str:
    return next(label for bound, label in AGE_BRACKETS if age < bound)


def user_groups(attributes: pd.DataFrame | None, user_ids: Sequence[str]) -> UserGroups:
    """Group labels for ``user_ids`` from a user-attribute frame indexed by user id: an ``age`` column of
    numbers (or of number strings, as MovieLens stores them) in MovieLens-1M's brackets; other columns of a
    numeric dtype with more than 10 values in quartiles; anything else as text, used when it has at most
    ``MAX_GROUPS`` values (a zip code or an id is not a group). Users missing from the frame get None."""
    if attributes is None or attributes.empty:
        return UserGroups({})
    frame = attributes.copy()
    frame.index = frame.index.astype(str)
    wanted = [str(u) for u in user_ids]
    labels: dict[str, list[str | None]] = {}
    skipped: dict[str, str] = {}
    for column in frame.columns:
        whole = frame[column]  # the kind of column and its bins come from every user, not only the audited
        raw = whole.reindex(wanted)
        present = whole.dropna()
        present = present[present.astype(str).str.strip() != ""]
        numeric = pd.to_numeric(present, errors="coerce")
        is_numeric = len(present) > 0 and not numeric.isna().any()
        name = str(column)
        if is_numeric and name.lower() == "age":
            values = pd.to_numeric(raw, errors="coerce")
            labels[name] = [None if pd.isna(v) else _age_bracket(float(v)) for v in values]
        elif pd.api.types.is_numeric_dtype(whole.dtype) and numeric.nunique() > 10:
            edges = np.unique(np.quantile(numeric, [0, 0.25, 0.5, 0.75, 1.0]))
            names = [f"{edges[i]:g} to {edges[i + 1]:g}" for i in range(len(edges) - 1)]
            # intervals closed on the right, the first one on both sides
            labels[name] = [None if pd.isna(v) else names[min(max(int(np.searchsorted(edges, v)) - 1, 0),
                                                              len(names) - 1)] for v in raw]
        elif present.astype(str).nunique() <= MAX_GROUPS and len(present):
            labels[name] = [None if (pd.isna(v) or str(v).strip() == "") else str(v) for v in raw]
        else:
            skipped[name] = (f"{present.astype(str).nunique()} distinct values: not a grouping" if len(present)
                             else "no values")
    return UserGroups(labels, skipped)


@dataclass(frozen=True)
class Robustness:
    """Agreement of a model's top-k with the full history and without its oldest 10%."""

    overlap: float
    kendall_tau: float
    users: int


@dataclass
class ModelAudit:
    """Everything the audit measured for one model on the audited users."""

    name: str
    ndcg: float
    hit: float
    groups: dict[str, dict[str, GroupReport]]  # metric -> attribute -> report
    gini: float
    long_tail_share: float
    coverage: float
    top1_popularity: float
    topk_popularity: float
    robustness: Robustness | None
    seconds: float
    lorenz: list[float] = field(default_factory=list)
    per_user: dict[str, list[float]] = field(default_factory=dict, repr=False)
    versus: tuple[float, float, float] | None = None
    """NDCG@k minus that of the list it re-ordered, same users: mean and paired bootstrap 95% (re-ranked rows)."""


@dataclass
class AuditReport:
    """An audit of several models on one split, protocol and set of users."""

    dataset: str
    split: str
    protocol: str
    k: int
    users: int
    seed: int
    targets_popularity: float
    groups_skipped: dict[str, str]
    models: list[ModelAudit]
    sensitivity: list[SensitivityReport] = field(default_factory=list)
    prompt_robustness: list[LLMRobustnessReport] = field(default_factory=list)
    position_bias: list[PositionBias] = field(default_factory=list)
    faithfulness: list[Faithfulness] = field(default_factory=list)
    reranked: list[ModelAudit] = field(default_factory=list)
    """The first model on a seeded sample of ``reranked_users`` audited users, then each LLM re-ranker's
    re-ordering of its top 20 for the same users (and each mitigation of that), as the pipeline ranks."""
    reranked_users: int = 0
    reranked_targets_popularity: float = float("nan")
    date: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    machine: dict[str, Any] = field(default_factory=dict)
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (per-user figures included)."""
        return asdict(self)


def popularity_percentiles(counts: np.ndarray) -> np.ndarray:
    """Each item's training interaction count as a percentile among all items (100: the most popular;
    ties share their mean rank)."""
    if len(counts) < 2:
        return np.full(len(counts), 100.0)
    return 100.0 * (rankdata(counts, method="average") - 1) / (len(counts) - 1)


def lorenz_curve(exposure: np.ndarray, points: int = 51) -> list[float]:
    """Cumulative share of exposure held by the least-shown items, at ``points`` evenly spaced shares of the
    catalog (0 to 1): the diagonal for equal exposure, a curve hugging zero when a few items get it all."""
    x = np.sort(np.asarray(exposure, dtype=np.float64))
    total = x.sum()
    if total == 0 or x.size == 0:
        return np.linspace(0, 1, points).tolist()
    cumulative = np.r_[0.0, np.cumsum(x) / total]
    shares = np.linspace(0, 1, points)
    return np.interp(shares * x.size, np.arange(x.size + 1), cumulative).tolist()


def _oldest_removed(history: np.ndarray, share: float = 0.1) -> np.ndarray:
    cut = max(1, int(np.ceil(share * len(history)))) if len(history) > 1 else 0
    return history[cut:]


def _robustness(model: Recommender, queries: Queries, k: int, batch_size: int) -> Robustness:
    overlaps, taus = [], []
    for start in range(0, len(queries.users), batch_size):
        histories = queries.histories[start:start + batch_size]
        ad_hoc = np.full(len(histories), -1, dtype=np.int64)
        full = model.score(ad_hoc, histories).astype(np.float64)
        cut = model.score(ad_hoc, [_oldest_removed(h) for h in histories]).astype(np.float64)
        for row, seen in enumerate(histories):
            full[row, seen] = -np.inf
            cut[row, seen] = -np.inf
        full_top, cut_top = top_k(full, k), top_k(cut, k)
        for row in range(len(histories)):
            overlaps.append(overlap_at_k(full_top[row].tolist(), cut_top[row].tolist(), k))
            union = np.union1d(full_top[row], cut_top[row])
            taus.append(kendall_tau(full[row, union], cut[row, union]))
    return Robustness(float(np.mean(overlaps)), float(np.mean(taus)), len(overlaps))


def _mitigated(name: str, candidates: ItemList, history: np.ndarray, bins: PopularityBins, k: int,
               penalty_weight: float | None = None) -> list[int]:
    """The top ``k`` item indices after mitigation ``name`` of one user's candidates (ids are indices)."""
    weight = CALIBRATION_WEIGHT
    if name == "popularity-penalty":
        if penalty_weight is None:
            raise RecllmError("the popularity-penalty mitigation needs its weight (choose_penalty_weight)")
        weight = penalty_weight
    out = mitigate(name, candidates, [str(i) for i in history], bins, k=k, weight=weight, share=TAIL_QUOTA)
    return [int(i) for i in out.items]


def audit_model(name: str, model: Recommender, queries: Queries, groups: UserGroups, counts: np.ndarray,
                *, k: int = 10, batch_size: int = 256, seed: int = 0, min_group: int = 20,
                robustness: bool = True, mitigations: Sequence[str] = (), penalty_weight: float | None = None
                ) -> list[ModelAudit]:
    """Audit one fitted model on ``queries`` (``counts``: the items' training interaction counts): its own
    lists first, then the same lists after each of ``mitigations`` (re-ordering its top ``POOL``;
    ``popularity-penalty`` at ``penalty_weight``, from ``choose_penalty_weight``)."""
    for mitigation in mitigations:
        if mitigation not in MITIGATIONS:
            raise RecllmError(f"unknown mitigation '{mitigation}'; known: {', '.join(MITIGATIONS)}")
    started = time.perf_counter()
    ranks: list[np.ndarray] = []
    tops: list[np.ndarray] = []
    mitigated: dict[str, list[list[int]]] = {m: [] for m in mitigations}
    bins = PopularityBins({str(i): float(c) for i, c in enumerate(counts)})
    pool = max(POOL, k)
    for start in range(0, len(queries.users), batch_size):
        stop = min(start + batch_size, len(queries.users))
        scores = masked_scores(model, queries.users[start:stop], queries.histories[start:stop])
        tops.append(top_k(scores, k))
        pools = top_k(scores, pool) if mitigations else None
        for row, targets in enumerate(queries.targets[start:stop]):
            ranks.append(pessimistic_ranks(np.repeat(scores[row:row + 1], len(targets), axis=0), targets))
            if pools is not None:
                candidates = ItemList(tuple(str(i) for i in pools[row]), scores[row, pools[row]])
                for mitigation in mitigations:
                    mitigated[mitigation].append(_mitigated(mitigation, candidates, queries.histories[start + row],
                                                            bins, k, penalty_weight))
    out = [_figures(name, np.concatenate(tops), ranks, groups, counts, k=k, seed=seed, min_group=min_group,
                    robustness=_robustness(model, queries, k, batch_size) if robustness else None,
                    started=started)]
    for mitigation in mitigations:
        lists = np.asarray(mitigated[mitigation], dtype=np.int64)
        mine = [np.asarray([_position(row, t) for t in targets]) for row, targets in zip(lists, queries.targets,
                                                                                          strict=True)]
        label = f"{name} + {mitigation}" + (f" ({penalty_weight:.2f})" if mitigation == "popularity-penalty" else "")
        out.append(_figures(label, lists, mine, groups, counts, k=k, seed=seed,
                            min_group=min_group, robustness=None, started=time.perf_counter()))
    return out


PENALTY_GRID = tuple(round(0.01 * i, 2) for i in range(101))
"""Weights of the popularity penalty tried by ``choose_penalty_weight``."""


def choose_penalty_weight(model: Recommender, split: Split, counts: np.ndarray, *, users: int | None = 1000,
                          seed: int = 0, batch_size: int = 256) -> tuple[float, dict[str, float]]:
    """The popularity-penalty weight (of ``PENALTY_GRID``) whose first items are on average as popular as the
    users' next items, judged on validation users only (their training history, the validation item as the
    target; never a test user): the weight with the smallest absolute difference of the mean top-1 popularity
    percentile from the validation targets', the smaller weight on a tie. Also returns that mean per weight
    and the targets' (key ``targets``)."""
    queries = select_users(queries_for_validation(split), users, seed)
    if not len(queries.users):
        raise RecllmError("choosing the popularity-penalty weight needs validation users; the split has none")
    percentile = popularity_percentiles(counts)
    bins = PopularityBins({str(i): float(c) for i, c in enumerate(counts)})
    firsts: dict[float, list[int]] = {w: [] for w in PENALTY_GRID}
    for start in range(0, len(queries.users), batch_size):
        stop = min(start + batch_size, len(queries.users))
        scores = masked_scores(model, queries.users[start:stop], queries.histories[start:stop])
        pools = top_k(scores, POOL)
        for row in range(stop - start):
            candidates = ItemList(tuple(str(i) for i in pools[row]), scores[row, pools[row]])
            for weight, first in zip(PENALTY_GRID, first_under_penalties(candidates, bins, PENALTY_GRID),
                                     strict=True):
                firsts[weight].append(int(first))
    targets = float(percentile[np.concatenate(queries.targets)].mean())
    by_weight = {str(w): float(percentile[firsts[w]].mean()) for w in PENALTY_GRID}
    chosen = min(PENALTY_GRID, key=lambda w: (abs(by_weight[str(w)] - targets), w))
    return chosen, {**by_weight, "targets": targets}


def _position(row: np.ndarray, target: int) -> int:
    """0-based place of ``target`` in a top-k row, or k (outside it)."""
    where = np.flatnonzero(row == target)
    return int(where[0]) if len(where) else len(row)


def _figures(name: str, lists: np.ndarray, ranks: list[np.ndarray], groups: UserGroups, counts: np.ndarray, *,
             k: int, seed: int, min_group: int, robustness: Robustness | None, started: float) -> ModelAudit:
    """A ModelAudit from each user's top-k item indices and target ranks."""
    popularity = popularity_percentiles(counts)
    per_user = user_metrics(ranks, k)
    ndcg, hit = per_user[f"NDCG@{k}"], per_user[f"HR@{k}"]
    by_metric = group_gaps({f"NDCG@{k}": ndcg, f"HR@{k}": hit}, groups, min_users=min_group, seed=seed)
    exposure = exposure_counts(lists, len(counts))
    return ModelAudit(
        name=name, ndcg=float(ndcg.mean()), hit=float(hit.mean()), groups=by_metric, gini=gini(exposure),
        long_tail_share=long_tail_share(exposure, counts, TAIL_HEAD), coverage=coverage(exposure),
        top1_popularity=float(popularity[lists[:, 0]].mean()), topk_popularity=float(popularity[lists].mean()),
        robustness=robustness, seconds=time.perf_counter() - started, lorenz=lorenz_curve(exposure),
        per_user={f"NDCG@{k}": ndcg.tolist(), f"HR@{k}": hit.tolist()})


def group_gaps(per_metric: Mapping[str, np.ndarray], groups: UserGroups, *, min_users: int = 20, seed: int = 0
               ) -> dict[str, dict[str, GroupReport]]:
    """Each per-user metric by the groups of every attribute in ``groups`` (``group_metric``), with the
    p-values of all these gaps Holm-adjusted as one family: every gap tested for one ranker."""
    by_metric = {metric: {attribute: group_metric(values, labels, attribute=attribute, min_users=min_users,
                                                  seed=seed) for attribute, labels in groups.labels.items()}
                 for metric, values in per_metric.items()}
    tested = [(metric, attribute) for metric, reports in by_metric.items() for attribute, r in reports.items()
              if r.p_value is not None]
    adjusted = holm_adjust([by_metric[m][a].p_value or 0.0 for m, a in tested])
    for (metric, attribute), p in zip(tested, adjusted, strict=True):
        by_metric[metric][attribute] = replace(by_metric[metric][attribute], p_adjusted=p)
    return by_metric


@dataclass(frozen=True)
class _LLMLists:
    """One loaded LLM and its catalog, a maker of the audited re-ranker on it by extra prompt options, and the
    retriever's top ``n`` (user, history, candidates) of the first audited users."""

    make: Callable[[Mapping[str, Any]], Reranker]
    lists: list[tuple[str, list[str], ItemList]]
    llm: LLM
    catalog: ItemCatalog


def _llm_lists(model: Recommender, split: Split, queries: Queries, reranker: str, llm_spec: str,
               bundle: DataBundle, *, users: int, options: dict[str, Any] | None, n: int) -> _LLMLists:
    """A maker of re-ranker ``reranker`` on one loaded ``llm_spec`` with extra prompt options, and ``model``'s
    top ``n`` with the history of the first ``users`` audited users."""
    from recllm.pipeline import build_llm, build_reranker, llm_catalog

    llm = build_llm(llm_spec)
    catalog = llm_catalog(llm_spec, bundle.catalog)
    base = dict(options or {})

    def make(prompt_options: Mapping[str, Any]) -> Reranker:
        chosen = dict(base)
        if prompt_options:  # a paraphrased Template object goes through as it is (the registry keeps objects)
            chosen["prompt_options"] = {**dict(chosen.get("prompt_options") or {}), **prompt_options}
        return build_reranker(reranker, llm, catalog, chosen)

    return _LLMLists(make, top_lists(model, split, queries, users=users, n=n), llm, catalog)


def top_lists(model: Recommender, split: Split, queries: Queries, *, users: int, n: int
              ) -> list[tuple[str, list[str], ItemList]]:
    """(user id, history ids, ``model``'s top ``n`` unseen items with its scores) of the first ``users`` of
    ``queries``: what a re-ranker is handed."""
    vocab = split.train.item_vocab
    lists = []
    for row in range(min(users, len(queries.users))):
        history = queries.histories[row]
        scores = masked_scores(model, queries.users[row:row + 1], [history])[0]
        top = top_k(scores[None, :], n)[0]
        lists.append((str(split.train.user_vocab.id(int(queries.users[row]))), vocab.lookup_ids(history),
                      ItemList(tuple(vocab.lookup_ids(top)), scores[top])))
    return lists


def sample_queries(queries: Queries, groups: UserGroups, users: int, seed: int) -> tuple[Queries, UserGroups]:
    """A seeded sample of ``users`` audited users (all when there are no more), in user order, with their
    group labels."""
    if users >= len(queries.users):
        return queries, groups
    rows = np.sort(np.random.default_rng(seed).choice(len(queries.users), size=users, replace=False))
    sampled = Queries(queries.users[rows], [queries.histories[r] for r in rows], [queries.targets[r] for r in rows])
    return sampled, UserGroups({a: [labels[r] for r in rows] for a, labels in groups.labels.items()}, groups.skipped)


def _stating(make: Callable[[Mapping[str, Any]], Reranker]) -> Callable[[str | None], Reranker]:
    """A re-ranker maker by persona (None: the neutral prompt) from one by prompt options."""
    return lambda persona: make({"persona": persona} if persona is not None else {})


def audit_reranked(label: str, model_name: str, model: Recommender, queries: Queries, vocab: Vocabulary,
                   lists: Sequence[tuple[str, list[str], ItemList]], reranked: Sequence[ItemList],
                   groups: UserGroups, counts: np.ndarray, *, k: int = 10, seed: int = 0, min_group: int = 20,
                   mitigations: Sequence[str] = (), penalty_weight: float | None = None, seconds: float = 0.0,
                   batch_size: int = 256) -> list[ModelAudit]:
    """The lists of ``queries``' users (``groups``: theirs) as a pipeline that re-ranks gives them: ``model``'s
    own top k for those users (row ``MODEL (N users)``), its candidates of ``lists`` re-ordered as ``reranked``
    says (row ``label``; below them the ranking follows the model), and that re-ordering after each of
    ``mitigations`` (of the re-ranked candidates with the re-ranker's scores, as ``Pipeline`` does;
    ``popularity-penalty`` at ``penalty_weight``). Re-ordered rows carry their paired NDCG@k difference to the
    model's row."""
    n = len(lists)
    if len(reranked) != n or n != len(queries.users):
        raise RecllmError(f"{len(reranked)} re-ranked lists and {n} candidate lists for {len(queries.users)} users")
    for mitigation in mitigations:
        if mitigation not in MITIGATIONS:
            raise RecllmError(f"unknown mitigation '{mitigation}'; known: {', '.join(MITIGATIONS)}")
    bins = PopularityBins({vocab.id(i): float(c) for i, c in enumerate(counts)})
    own_tops, own_ranks, new_tops, new_ranks = [], [], [], []
    mitigated: dict[str, list[list[int]]] = {m: [] for m in mitigations}
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        scores = masked_scores(model, queries.users[start:stop], queries.histories[start:stop])
        for row in range(stop - start):
            user = start + row
            _, history, shown = lists[user]
            order = vocab.indices(reranked[user].items)
            if sorted(order.tolist()) != sorted(vocab.indices(shown.items).tolist()):
                raise RecllmError(f"user {lists[user][0]}: the re-ranked list is not a re-ordering of the candidates")
            deep = top_k(scores[row:row + 1], max(k, len(order) + k))[0]
            rest = deep[~np.isin(deep, order)]
            targets = queries.targets[user]
            ranks = pessimistic_ranks(np.repeat(scores[row:row + 1], len(targets), axis=0), targets)
            own_tops.append(deep[:k])
            own_ranks.append(ranks)
            full = np.concatenate([order, rest])
            new_tops.append(full[:k])
            new_ranks.append(np.asarray([int(np.flatnonzero(order == t)[0]) if t in order else int(r)
                                         for t, r in zip(targets, ranks, strict=True)]))
            for mitigation in mitigations:
                weight = penalty_weight if mitigation == "popularity-penalty" else CALIBRATION_WEIGHT
                if weight is None:
                    raise RecllmError("the popularity-penalty mitigation needs its weight (choose_penalty_weight)")
                out = mitigate(mitigation, reranked[user], history, bins, k=min(k, len(order)), weight=weight,
                               share=TAIL_QUOTA)
                mine = vocab.indices(out.items)
                mitigated[mitigation].append(np.concatenate([mine, full[~np.isin(full, mine)]])[:k].tolist())
    now = time.perf_counter()
    own = _figures(f"{model_name} ({n} users)", np.asarray(own_tops), own_ranks, groups, counts, k=k, seed=seed,
                   min_group=min_group, robustness=None, started=now)
    reference = np.asarray(own.per_user[f"NDCG@{k}"])
    rows = [own]
    new = _figures(label, np.asarray(new_tops), new_ranks, groups, counts, k=k, seed=seed, min_group=min_group,
                   robustness=None, started=now)
    new.seconds = seconds
    rows.append(new)
    for mitigation in mitigations:
        lists_k = np.asarray(mitigated[mitigation], dtype=np.int64)
        ranks_k = [np.asarray([_position(row, t) for t in targets]) for row, targets in
                   zip(lists_k, queries.targets, strict=True)]
        suffix = f" ({penalty_weight:.2f})" if mitigation == "popularity-penalty" else ""
        rows.append(_figures(f"{label} + {mitigation}{suffix}", lists_k, ranks_k, groups, counts, k=k, seed=seed,
                             min_group=min_group, robustness=None, started=time.perf_counter()))
    for row_audit in rows[1:]:
        row_audit.versus = paired_difference(row_audit.per_user[f"NDCG@{k}"], reference, seed=seed)
    return rows


RERANK_CHUNK = 25
"""Users re-ranked per call when the audit re-ranks its users' lists (a progress line after each)."""


def _rerank_all(reranker: Reranker, lists: Sequence[tuple[str, list[str], ItemList]]) -> tuple[list[ItemList], float]:
    """Each list re-ranked (a chunk of users per call, so a re-ranker that scores users jointly can) and the
    seconds it took."""
    started = time.perf_counter()
    out: list[ItemList] = []
    for start in range(0, len(lists), RERANK_CHUNK):
        chunk = lists[start:start + RERANK_CHUNK]
        results = reranker.rerank_many([RerankRequest(history, shown, user) for user, history, shown in chunk])
        out.extend(r.items for r in results)
        log.info("audit: %s re-ranked %d/%d lists (%.1f s a list)", reranker.name, len(out), len(lists),
                 (time.perf_counter() - started) / len(out))
    return out, time.perf_counter() - started


PARAPHRASED_RERANKERS = {"likelihood": "rank-likelihood", "verbalizer": "rank-verbalizer", "listwise": "rank-listwise"}
"""The built-in re-rankers whose prompts have paraphrases, and their template task."""


@dataclass
class LLMAudit:
    """What the audit measured for one LLM re-ranker over the first model's top 20."""

    sensitivity: SensitivityReport
    prompt_robustness: LLMRobustnessReport | None
    position: PositionBias | None
    faithfulness: Faithfulness | None
    ranked: list[ModelAudit] = field(default_factory=list)
    ranked_targets_popularity: float = float("nan")


def audit_llm_reranker(model: Recommender, split: Split, queries: Queries, reranker: str, llm: str,
                       bundle: DataBundle, *, users: int, attributes: Mapping[str, Sequence[str]],
                       options: dict[str, Any] | None = None, k: int = 10, seed: int = 0, permutations: int = 4,
                       explain: bool = True, probe_users: int | None = None, rank_users: int = 0,
                       model_name: str = "model", groups: UserGroups | None = None, counts: np.ndarray | None = None,
                       mitigations: Sequence[str] = (), penalty_weight: float | None = None, min_group: int = 20,
                       on_stage: Callable[[str], None] | None = None) -> LLMAudit:
    """Every LLM part of the audit for re-ranker ``reranker`` on ``llm`` over ``model``'s top 20 of the first
    ``users`` audited users, with one model load: FaiRLLM's stated attributes, prompt robustness (re-rankers
    with paraphrased templates), the position probe with and without ``permutations``-fold aggregation
    (``permutations`` < 2: no probe; over the first ``probe_users``, default ``users``: it costs
    ``1 + permutations`` calls a user, not one per attribute value, and its buckets need users) and, with
    ``explain``, the faithfulness of the first ``users`` lists' first items' explanations; with ``rank_users``,
    accuracy, user groups, exposure and popularity of a seeded sample of ``rank_users`` audited users' lists
    re-ranked with the neutral prompt, beside ``model_name``'s own on the same users (``audit_reranked``; ``groups`` and
    ``counts`` as ``audit_model`` takes them)."""
    stage = on_stage or (lambda _: None)
    probe_users = users if probe_users is None else probe_users
    loaded = _llm_lists(model, split, queries, reranker, llm, bundle, users=max(users, probe_users),
                        options=options, n=20)
    ranked: list[ModelAudit] = []
    ranked_targets = float("nan")
    if rank_users:
        if groups is None or counts is None:
            raise RecllmError("auditing re-ranked lists needs the users' groups and the items' counts")
        sampled, sampled_groups = sample_queries(queries, groups, rank_users, seed)
        ranked_lists = top_lists(model, split, sampled, users=len(sampled.users), n=20)
        stage(f"re-ranking {len(ranked_lists)} users' lists")
        orders, seconds = _rerank_all(loaded.make({}), ranked_lists)
        ranked = audit_reranked(f"{model_name} + {reranker}", model_name, model, sampled, split.train.item_vocab,
                                ranked_lists, orders, sampled_groups, counts, k=k, seed=seed, min_group=min_group,
                                mitigations=mitigations, penalty_weight=penalty_weight, seconds=seconds)
        ranked_targets = float(popularity_percentiles(counts)[np.concatenate(sampled.targets)].mean())
    lists = loaded.lists[:users]
    stage("attribute prompts")
    sensitivity = prompt_sensitivity(_stating(loaded.make), lists, attributes, k=k)
    robustness = None
    if reranker in PARAPHRASED_RERANKERS:
        stage("paraphrases and shuffled history")
        robustness = llm_robustness(loaded.make, PARAPHRASED_RERANKERS[reranker], lists, k=k, seed=seed)
    position = trust = None
    if permutations >= 2 or explain:
        probed = loaded.lists[:probe_users] if permutations >= 2 else lists
        vocab = split.train.item_vocab
        targets = [vocab.id(int(queries.targets[row][0])) for row in range(len(probed))]
        probes = probe_lists(probed, targets, n=20, seed=seed)
        ranker = loaded.make({})
        stage("position probe")
        if permutations >= 2:
            position, results = position_bias(ranker, probes, targets, k=k, permutations=permutations, seed=seed)
        else:
            results = [ranker.rerank(history, shown, user=user) for user, history, shown, _ in probes]
        if explain:
            stage("explanations")
            trust = faithfulness(ranker.name, results[:users], [history for _, history, _, _ in probes[:users]],
                                 loaded.llm, loaded.catalog)
    return LLMAudit(sensitivity, robustness, position, trust, ranked, ranked_targets)


def _reporting(on_model: Callable[[str, str], None] | None, name: str) -> Callable[[str], None] | None:
    """``on_model`` bound to one re-ranker's name, for its stages."""
    return None if on_model is None else lambda stage: on_model(name, stage)


def run_audit(bundle: DataBundle, split: Split, models: Sequence[str], *, params: dict[str, dict[str, Any]] | None
              = None, users: int | None = None, k: int = 10, seed: int = 0, split_name: str = "leave-one-out",
              mitigations: Sequence[str] = (), rerankers: Sequence[str] = (), llm: str = "hf",
              llm_users: int = 50, attributes: Mapping[str, Sequence[str]] | None = None,
              permutations: int = 4, explain: bool = True, probe_users: int | None = None,
              rank_users: int | None = None, on_model: Callable[[str, str], None] | None = None) -> AuditReport:
    """Fit each named retriever on ``split.train`` and audit it on the same seeded test users; with
    ``rerankers``, each LLM re-ranker over the first model's top 20 for the first ``llm_users`` of those users
    (``audit_llm_reranker``: stated attributes, FaiRLLM's that MovieLens has by default; prompt robustness;
    position bias with ``permutations``-fold aggregation; faithfulness of explanations with ``explain``; and a
    seeded sample of ``rank_users`` audited users' re-ranked lists (default ``llm_users``; 0: none) audited as
    the models are, beside the first model's own lists for the same users)."""
    if not models:
        raise RecllmError("the audit needs at least one model")
    queries = select_users(queries_for_test(split), users, seed)
    user_ids = [str(u) for u in split.train.user_vocab.lookup_ids(queries.users)]
    groups = user_groups(bundle.dataset.user_attributes, user_ids)
    counts = np.bincount(split.train.items, minlength=split.train.n_items)
    targets = np.concatenate(queries.targets)
    audits = []
    first: Recommender | None = None
    first_weight: float | None = None
    for name in models:
        model = build_retriever(name, bundle, (params or {}).get(name, {}))
        if on_model:
            on_model(name, "fit")
        model.fit(split.train, valid=split.valid if len(split.valid) else None)
        if on_model:
            on_model(name, "audit")
        weight = choose_penalty_weight(model, split, counts, seed=seed)[0] if "popularity-penalty" in mitigations \
            else None
        audits.extend(audit_model(name, model, queries, groups, counts, k=k, seed=seed, mitigations=mitigations,
                                  penalty_weight=weight))
        if first is None:
            first, first_weight = model, weight
    llm_audits = []
    for reranker in rerankers:
        assert first is not None
        llm_audits.append(audit_llm_reranker(
            first, split, queries, reranker, llm, bundle, users=llm_users,
            attributes=attributes or {a: FAIRLLM_VALUES[a] for a in MOVIELENS_ATTRIBUTES},
            options=(params or {}).get(reranker), k=k, seed=seed, permutations=permutations, explain=explain,
            probe_users=probe_users, rank_users=llm_users if rank_users is None else rank_users,
            model_name=models[0], groups=groups, counts=counts, mitigations=mitigations, penalty_weight=first_weight,
            on_stage=_reporting(on_model, reranker)))
    reranked = [row for i, a in enumerate(llm_audits) for row in (a.ranked if i == 0 else a.ranked[1:])]
    reranked_users = len(reranked[0].per_user[f"NDCG@{k}"]) if reranked else 0
    reranked_targets = llm_audits[0].ranked_targets_popularity if reranked else float("nan")
    return AuditReport(dataset=bundle.name, split=split_name, protocol="full", k=k, users=len(queries.users),
                       seed=seed, targets_popularity=float(popularity_percentiles(counts)[targets].mean()),
                       groups_skipped=groups.skipped, models=audits,
                       sensitivity=[a.sensitivity for a in llm_audits],
                       prompt_robustness=[a.prompt_robustness for a in llm_audits if a.prompt_robustness],
                       position_bias=[a.position for a in llm_audits if a.position],
                       faithfulness=[a.faithfulness for a in llm_audits if a.faithfulness],
                       reranked=reranked, reranked_users=reranked_users,
                       reranked_targets_popularity=reranked_targets,
                       machine=machine_info())
