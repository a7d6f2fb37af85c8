"""LLM re-rankers (likelihood, verbalizer, listwise), grounding, permutation aggregation and blending."""

from recllm.rerank.base import (
    Attempt,
    Grounded,
    LLMReranker,
    Reranker,
    RerankError,
    RerankResult,
    ground,
)
from recllm.rerank.blend import (
    DEFAULT_GRID,
    BlendChoice,
    BlendedReranker,
    blend_scores,
    choose_blend_weight,
    normalize_scores,
)
from recllm.rerank.diagnostics import Diagnostics, DiagnosticsSummary, summarize_diagnostics
from recllm.rerank.factory import RERANKERS, create_reranker, reranker_names
from recllm.rerank.likelihood import LikelihoodReranker, LikelihoodScores
from recllm.rerank.listwise import ListwiseReranker
from recllm.rerank.parsing import ParsedRanking, RankingParser, parse_ranking
from recllm.rerank.permutation import PermutationAggregator, aggregate_rankings
from recllm.rerank.verbalizer import VerbalizerReranker

__all__ = [
    "DEFAULT_GRID",
    "RERANKERS",
    "Attempt",
    "BlendChoice",
    "BlendedReranker",
    "Diagnostics",
    "DiagnosticsSummary",
    "Grounded",
    "LLMReranker",
    "LikelihoodReranker",
    "LikelihoodScores",
    "ListwiseReranker",
    "ParsedRanking",
    "PermutationAggregator",
    "RankingParser",
    "RerankError",
    "RerankResult",
    "Reranker",
    "VerbalizerReranker",
    "aggregate_rankings",
    "blend_scores",
    "choose_blend_weight",
    "create_reranker",
    "ground",
    "normalize_scores",
    "parse_ranking",
    "reranker_names",
    "summarize_diagnostics",
]
