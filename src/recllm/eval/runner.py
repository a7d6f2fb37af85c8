"""Fit several models on one split and evaluate them under one protocol: the engine behind
`recllm evaluate` and the benchmarks."""

from __future__ import annotations

import logging
import pickle
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from recllm.data.bundle import DataBundle
from recllm.data.catalog import ItemCatalog
from recllm.data.splits import SPLITS, Split
from recllm.errors import ConfigError
from recllm.eval.candidates import (
    Cases,
    RankerOutcome,
    evaluate_order,
    evaluate_reranker,
    evaluate_scorer,
    popularity_percentiles,
    position_breakdown,
    sampled_cases,
    select_users,
    top_n_cases,
)
from recllm.eval.protocols import (
    ProtocolResult,
    evaluate_full,
    evaluate_rating,
    queries_for_test,
)
from recllm.eval.report import ModelRow, Report
from recllm.llm.base import LLM
from recllm.models.base import Recommender
from recllm.models.rating import RATING_PREDICTORS
from recllm.models.registry import create_model
from recllm.pipeline import build_llm, build_reranker, build_retriever, llm_catalog
from recllm.rerank.base import Reranker
from recllm.rerank.factory import RERANKERS, reranker_config

log = logging.getLogger(__name__)
_SIZED = {"sampled": re.compile(r"^sampled-(\d+)$"), "rerank-top": re.compile(r"^rerank-top(\d+)$")}
Stage = Callable[[str, str], None]


def parse_protocol(protocol: str) -> tuple[str, int | None]:
    """'full' | 'sampled-N' | 'rerank-topN' | 'rating' -> (kind, N); kind is full, sampled, rerank-top or
    rating."""
    if protocol in ("full", "rating"):
        return protocol, None
    for kind, pattern in _SIZED.items():
        match = pattern.match(protocol)
        if match:
            return kind, int(match[1])
    raise ConfigError(f"unknown protocol '{protocol}'; use full, sampled-N (e.g. sampled-20), "
                      f"rerank-topN (e.g. rerank-top20) or rating")


def make_split(bundle: DataBundle, kind: str = "leave-one-out", seed: int = 0) -> Split:
    if kind not in SPLITS:
        raise ConfigError(f"unknown split '{kind}'; known: {', '.join(SPLITS)}")
    if kind == "cold-items":
        return SPLITS[kind](bundle.dataset, seed=seed)
    return SPLITS[kind](bundle.dataset)


def run_evaluation(
    bundle: DataBundle,
    models: list[str],
    *,
    protocol: str = "full",
    ks: tuple[int, ...] = (10,),
    seed: int = 0,
    split: Split | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    on_model: Stage | None = None,
    rerankers: Sequence[str] = (),
    llm: LLM | str = "hf",
    max_users: int | None = None,
    permutations: int = 1,
    ray: ModuleType | None = None,
    shards: int | None = None,
) -> Report:
    """Fit each model on the split's train part (validation for early stopping) and evaluate on test.

    Test histories are train + validation interactions; those items are excluded from the ranking.
    ``on_model(name, stage)`` is called as each model or re-ranker starts a stage (for progress).

    ``rerankers`` (names of ``recllm.rerank``) run over ``llm`` (a spec such as ``"hf"`` or a built LLM) under
    ``sampled-N`` (beside the models and the random shown order, on the same candidates) or ``rerank-topN``
    (over each model's top N). ``params`` may hold options for re-rankers under their names;
    ``permutations`` > 1 wraps each in seeded permutation aggregation; ``max_users`` evaluates a seeded
    sample of test users (every row on the same users).

    ``ray`` (a connected Ray module, ``recllm.distributed.ray_session``) runs the heavy parts as Ray tasks over
    ``shards`` contiguous shards of users (default: 4 per CPU of the cluster): the ``full`` ranking of each
    model, and every re-ranker over its cases, each worker building the re-ranker and its LLM once from a
    recipe. Results equal the single-process run's (only timings, token and call counts differ); ``shards`` without
    ``ray`` runs the same shards one after another here.
    """
    kind, n = parse_protocol(protocol)
    split = split or make_split(bundle, seed=seed)
    params = params or {}
    unknown = set(params) - set(models) - set(rerankers)
    if unknown:
        raise ConfigError("parameters given for models or re-rankers not being evaluated: "
                          f"{', '.join(sorted(unknown))}")
    if rerankers and kind not in ("sampled", "rerank-top"):
        raise ConfigError(f"re-rankers are evaluated under sampled-N or rerank-topN, not '{protocol}'")
    if kind == "rerank-top" and not models:
        raise ConfigError("rerank-topN needs at least one model to retrieve the top N")
    if kind == "rerank-top" and n is not None and max(ks) > n:
        raise ConfigError(f"cut-off K={max(ks)} exceeds the {n} re-ranked candidates of '{protocol}': below rank "
                          f"{n} every ranker is the retriever; use K <= {n} (e.g. --k {n}) or a larger N")
    if permutations < 1:
        raise ConfigError(f"permutations must be at least 1, got {permutations}")
    if shards is not None and shards < 1:
        raise ConfigError(f"shards must be at least 1, got {shards}")
    n_shards = shards or (_default_shards(ray) if ray is not None else 1)
    report = Report(dataset=bundle.name,
                    dataset_stats={"users": bundle.dataset.n_users, "items": bundle.dataset.n_items,
                                   "interactions": len(bundle.dataset)},
                    split=split.kind, split_stats=split.summary(), protocol=protocol, ks=list(ks), seed=seed)
    if kind == "rating":
        if max_users is not None:
            raise ConfigError("--users applies to ranking protocols, not 'rating'")
        history = split.test_history()
        for name in models:
            if name not in RATING_PREDICTORS:
                raise ConfigError(f"'{name}' is not a rating predictor; known: {', '.join(RATING_PREDICTORS)}")
            predictor = RATING_PREDICTORS.create(name, options=params.get(name, {}))
            started = time.perf_counter()
            predictor.fit(history)
            fit_seconds = time.perf_counter() - started
            result = evaluate_rating(predictor, split.test)
            report.rows.append(_row(name, params.get(name, {}), result, fit_seconds))
        return report

    all_queries = queries_for_test(split)
    queries = select_users(all_queries, max_users, seed)
    if len(queries.users) < len(all_queries.users):
        report.notes.append(f"{len(queries.users):,} of {len(all_queries.users):,} test users, drawn with "
                            f"seed {seed}; every row is on the same users")
    if n_shards > 1:
        report.notes.append(f"users in {n_shards} shards" + (" run as Ray tasks" if ray is not None else "")
                            + "; every figure equals an unsharded run's but timings, tokens read and model calls")
    for name in models:
        create_model(name, params.get(name))  # validate every name before the slow work
    sharded = n_shards > 1 or ray is not None  # re-rankers then travel as recipes, never as loaded models
    built = _build_rerankers(rerankers, llm, bundle, params, permutations, seed, recipes=sharded) \
        if rerankers else []
    sampled: Cases | None = None
    if kind == "sampled":
        assert n is not None
        sampled = sampled_cases(queries, n=n, seen_sequences=bundle.dataset.sequence,
                                n_items=bundle.dataset.n_items, seed=seed)
        if rerankers:
            add_outcome_row(report, evaluate_order(sampled, ks=ks, name="random"), {}, 0.0, sampled, split)
    for name in models:
        model, fit_seconds = _fit(name, params.get(name), split, bundle, on_model)
        if on_model:
            on_model(name, "evaluate")
        if kind == "full":
            result = evaluate_full(model, queries, ks=ks, popularity=split.train.item_popularity, shards=n_shards,
                                   ray=ray)
            report.rows.append(_with_training_note(_row(name, model.hyperparameters(), result, fit_seconds), model))
        elif sampled is not None:
            row = add_outcome_row(report, evaluate_scorer(model, sampled, ks=ks, name=name),
                                    model.hyperparameters(), fit_seconds, sampled, split)
            _with_training_note(row, model)
        else:
            assert n is not None
            cases = top_n_cases(model, queries, n=n)
            row = add_outcome_row(report, evaluate_order(cases, ks=ks, name=name), model.hyperparameters(),
                                    fit_seconds, cases, split)
            _with_training_note(row, model)
            for label, reranker, options in built:
                if on_model:
                    on_model(f"{name} + {label}", "re-rank")
                outcome = evaluate_reranker(reranker, cases, bundle.dataset.item_vocab,
                                            user_vocab=bundle.dataset.user_vocab, ks=ks, name=f"{name} + {label}",
                                            shards=n_shards, ray=ray)
                add_outcome_row(report, outcome, options, 0.0, cases, split)
    if sampled is not None:
        for label, reranker, options in built:
            if on_model:
                on_model(label, "re-rank")
            outcome = evaluate_reranker(reranker, sampled, bundle.dataset.item_vocab,
                                        user_vocab=bundle.dataset.user_vocab, ks=ks, name=label, shards=n_shards,
                                        ray=ray)
            add_outcome_row(report, outcome, options, 0.0, sampled, split)
    return report


def _fit(name: str, params: dict[str, Any] | None, split: Split, bundle: DataBundle,
         on_model: Stage | None) -> tuple[Recommender, float]:
    model = build_retriever(name, bundle, params)
    if on_model:
        on_model(name, "fit")
    started = time.perf_counter()
    model.fit(split.train, valid=split.valid if len(split.valid) else None)
    return model, time.perf_counter() - started


def _build_rerankers(names: Sequence[str], llm: LLM | str, bundle: DataBundle, params: dict[str, dict[str, Any]],
                     permutations: int, seed: int, *, recipes: bool = False
                     ) -> list[tuple[str, Reranker | RerankerRecipe, dict[str, Any]]]:
    """(row label, re-ranker, its options) per name; one LLM shared by all. With ``recipes`` (sharded runs)
    nothing is loaded here: each name becomes a ``RerankerRecipe`` that every worker builds once."""
    catalog = llm_catalog(llm, bundle.catalog) if isinstance(llm, str) else bundle.catalog
    if recipes:
        for name in names:  # a misspelt name or option fails here, not in a worker
            reranker_config(name).model_validate(params.get(name, {}))
        made = [RerankerRecipe(name, llm, catalog, dict(params.get(name, {})), permutations, seed) for name in names]
        return [(r.name, r, r.report_options()) for r in made]
    model = build_llm(llm) if isinstance(llm, str) else llm
    return [(r.name, r, options) for r, options in
            (_reranker(name, model, catalog, dict(params.get(name, {})), permutations, seed) for name in names)]


def _reranker(name: str, llm: LLM, catalog: ItemCatalog, options: dict[str, Any], permutations: int, seed: int
              ) -> tuple[Reranker, dict[str, Any]]:
    """Re-ranker ``name`` over ``llm``, wrapped in permutation aggregation when ``permutations`` > 1, and the
    options its report row shows."""
    from recllm.rerank import PermutationAggregator

    reranker: Reranker = build_reranker(name, llm, catalog, options)
    shown = dict(options)
    if permutations > 1:
        reranker = PermutationAggregator(reranker, permutations, seed=seed)
        shown["permutations"] = permutations
    return reranker, shown


_BUILT: dict[str, Reranker] = {}
"""Re-rankers built from recipes in this process, by recipe token (a Ray worker builds each once)."""
_LLMS: dict[str, LLM] = {}
"""LLMs built from specs in this process: re-rankers of one run share one model, as they do unsharded."""


@dataclass(frozen=True)
class RerankerRecipe:
    """Everything a process needs to build the same re-ranker as ``_reranker``: the LLM's spec (or a picklable
    LLM object, e.g. a test double), the catalog as that LLM names items, the options. Loaded models do not
    travel to Ray workers; recipes do, and each worker builds once (``token`` tells recipes apart)."""

    reranker: str
    llm: LLM | str
    catalog: ItemCatalog
    options: dict[str, Any]
    permutations: int = 1
    seed: int = 0
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        if not isinstance(self.llm, str):
            try:
                pickle.dumps(self.llm)
            except (TypeError, pickle.PicklingError, AttributeError) as exc:
                raise ConfigError(f"the LLM object {self.llm!r} cannot be sent to other processes ({exc}); give "
                                  "sharded or Ray evaluation an LLM spec such as 'hf' instead") from None

    @property
    def name(self) -> str:
        """The built re-ranker's name (its registered kind, in ``permutation(...)`` when aggregated)."""
        kind = getattr(RERANKERS.get_component(self.reranker), "kind", None)
        base = kind if isinstance(kind, str) else self.reranker
        return f"permutation({base})" if self.permutations > 1 else base

    def report_options(self) -> dict[str, Any]:
        return {**self.options, **({"permutations": self.permutations} if self.permutations > 1 else {})}

    def build(self) -> Reranker:
        """The re-ranker, built on first use in this process and kept."""
        if self.token not in _BUILT:
            if isinstance(self.llm, str):
                model = _LLMS.get(self.llm) or _LLMS.setdefault(self.llm, build_llm(self.llm))
            else:
                model = self.llm
            _BUILT[self.token] = _reranker(self.reranker, model, self.catalog, dict(self.options), self.permutations,
                                           self.seed)[0]
        return _BUILT[self.token]


def _default_shards(ray: ModuleType) -> int:
    """Four shards per CPU of the connected cluster (small shards even out uneven users)."""
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return 4 * max(1, cpus)


def add_outcome_row(report: Report, outcome: RankerOutcome, params: dict[str, Any], fit_seconds: float,
                      cases: Cases, split: Split) -> ModelRow:
    """A report row from a candidate-set outcome, with the position and popularity breakdowns."""
    row = _row(outcome.name, params, outcome.result, fit_seconds)
    row.diagnostics = outcome.diagnostics
    width = max((len(c.candidates) for c in cases.cases), default=0)
    k = min(report.ks)
    if width > 1:
        row.breakdown[f"NDCG@{k} by the target's position among the {width} candidates shown"] = \
            position_breakdown(outcome, f"NDCG@{k}", width)
    percentiles = popularity_percentiles(split.train.item_popularity)
    row.breakdown["mean popularity percentile (train)"] = {
        "top-1 item": float(percentiles[outcome.per_case["top1"]].mean()) if len(outcome.per_case["top1"]) else 0.0,
        "targets": float(np.mean([percentiles[c.targets].mean() for c in cases.cases])) if len(cases) else 0.0,
    }
    report.rows.append(row)
    return row


def _with_training_note(row: ModelRow, model: Recommender) -> ModelRow:
    history = getattr(model, "history_", None)
    if history:
        best = max(history, key=lambda h: h.get("valid_ndcg") or -1.0)
        row.notes.append(f"trained {len(history)} epochs, best validation NDCG@10 "
                         f"{best.get('valid_ndcg', float('nan')):.4f} at epoch {best.get('epoch')}")
    return row


def _row(name: str, params: dict[str, Any], result: ProtocolResult, fit_seconds: float) -> ModelRow:
    return ModelRow(model=name, params={k: _plain(v) for k, v in params.items()}, metrics=result.metrics,
                    n_users=result.n_users, fit_seconds=fit_seconds,
                    recommend_seconds_per_1k_users=result.seconds_per_1k_users)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
