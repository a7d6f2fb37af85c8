"""Fit several models on one split and evaluate them under one protocol: the engine behind
`recllm evaluate` and the benchmarks."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from recllm.data.bundle import DataBundle
from recllm.data.splits import SPLITS, Split
from recllm.errors import ConfigError
from recllm.eval.protocols import (
    ProtocolResult,
    evaluate_full,
    evaluate_rating,
    evaluate_sampled,
    queries_for_test,
)
from recllm.eval.report import ModelRow, Report
from recllm.models.rating import RATING_PREDICTORS
from recllm.models.registry import create_model

log = logging.getLogger(__name__)
_SAMPLED = re.compile(r"^sampled-(\d+)$")


def parse_protocol(protocol: str) -> tuple[str, int | None]:
    """'full' | 'sampled-N' | 'rating' -> (kind, N)."""
    if protocol in ("full", "rating"):
        return protocol, None
    match = _SAMPLED.match(protocol)
    if match:
        return "sampled", int(match[1])
    raise ConfigError(f"unknown protocol '{protocol}'; use full, sampled-N (e.g. sampled-100) or rating")


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
    on_model: Callable[[str, str], None] | None = None,
) -> Report:
    """Fit each model on the split's train part (validation for early stopping) and evaluate on test.

    Test histories are train + validation interactions; those items are excluded from the ranking.
    ``on_model(model, stage)`` is called as each model starts fitting and evaluating (for progress).
    """
    kind, n = parse_protocol(protocol)
    split = split or make_split(bundle, seed=seed)
    params = params or {}
    unknown = set(params) - set(models)
    if unknown:
        raise ConfigError(f"parameters given for models not being evaluated: {', '.join(sorted(unknown))}")
    report = Report(dataset=bundle.name,
                    dataset_stats={"users": bundle.dataset.n_users, "items": bundle.dataset.n_items,
                                   "interactions": len(bundle.dataset)},
                    split=split.kind, split_stats=split.summary(), protocol=protocol, ks=list(ks), seed=seed)
    if kind == "rating":
        history = split.test_history()
        for name in models:
            if name not in RATING_PREDICTORS:
                raise ConfigError(f"'{name}' is not a rating predictor; known: {', '.join(RATING_PREDICTORS)}")
            predictor = RATING_PREDICTORS[name](**params.get(name, {}))
            started = time.perf_counter()
            predictor.fit(history)
            fit_seconds = time.perf_counter() - started
            result = evaluate_rating(predictor, split.test)
            report.rows.append(_row(name, params.get(name, {}), result, fit_seconds))
        return report

    queries = queries_for_test(split)
    for name in models:
        model = create_model(name, params.get(name))  # validate every name before the slow work
        del model
    for name in models:
        model = create_model(name, params.get(name))
        if on_model:
            on_model(name, "fit")
        started = time.perf_counter()
        model.fit(split.train, valid=split.valid if len(split.valid) else None)
        fit_seconds = time.perf_counter() - started
        if on_model:
            on_model(name, "evaluate")
        if kind == "full":
            result = evaluate_full(model, queries, ks=ks, popularity=split.train.item_popularity)
        else:
            assert n is not None
            result = evaluate_sampled(model, queries, n=n, seen=bundle.dataset, seed=seed, ks=ks)
        row = _row(name, model.hyperparameters(), result, fit_seconds)
        history = getattr(model, "history_", None)
        if history:
            best = max(history, key=lambda h: h.get("valid_ndcg") or -1.0)
            row.notes.append(f"trained {len(history)} epochs, best validation NDCG@10 "
                             f"{best.get('valid_ndcg', float('nan')):.4f} at epoch {best.get('epoch')}")
        report.rows.append(row)
        log.info("%s: %s", name, {k: round(v, 4) for k, v in result.metrics.items()})
    return report


def _row(name: str, params: dict[str, Any], result: ProtocolResult, fit_seconds: float) -> ModelRow:
    return ModelRow(model=name, params={k: _plain(v) for k, v in params.items()}, metrics=result.metrics,
                    n_users=result.n_users, fit_seconds=fit_seconds,
                    recommend_seconds_per_1k_users=result.seconds_per_1k_users)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
