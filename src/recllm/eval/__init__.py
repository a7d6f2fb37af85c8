"""Evaluation: protocols (full, sampled-N, rating), metrics, reports."""

from recllm.eval.metrics import user_metrics
from recllm.eval.protocols import (
    ProtocolResult,
    Queries,
    build_queries,
    evaluate_full,
    evaluate_rating,
    evaluate_sampled,
    queries_for_test,
    queries_for_validation,
)
from recllm.eval.report import Report
from recllm.eval.runner import make_split, parse_protocol, run_evaluation

__all__ = [
    "ProtocolResult",
    "Queries",
    "Report",
    "build_queries",
    "evaluate_full",
    "evaluate_rating",
    "evaluate_sampled",
    "make_split",
    "parse_protocol",
    "queries_for_test",
    "queries_for_validation",
    "run_evaluation",
    "user_metrics",
]
