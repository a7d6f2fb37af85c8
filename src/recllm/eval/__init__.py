"""Evaluation: protocols (full, sampled-N, rerank-topN, rating), metrics, reports."""

from recllm.eval.candidates import (
    Case,
    Cases,
    RankerOutcome,
    evaluate_order,
    evaluate_reranker,
    evaluate_sampled,
    evaluate_scorer,
    sampled_cases,
    select_users,
    top_n_cases,
)
from recllm.eval.metrics import user_metrics
from recllm.eval.protocols import (
    ProtocolResult,
    Queries,
    build_queries,
    evaluate_full,
    evaluate_rating,
    queries_for_test,
    queries_for_validation,
)
from recllm.eval.report import Report
from recllm.eval.runner import make_split, parse_protocol, run_evaluation

__all__ = [
    "Case",
    "Cases",
    "ProtocolResult",
    "Queries",
    "RankerOutcome",
    "Report",
    "build_queries",
    "evaluate_full",
    "evaluate_order",
    "evaluate_rating",
    "evaluate_reranker",
    "evaluate_sampled",
    "evaluate_scorer",
    "make_split",
    "parse_protocol",
    "queries_for_test",
    "queries_for_validation",
    "run_evaluation",
    "sampled_cases",
    "select_users",
    "top_n_cases",
    "user_metrics",
]
