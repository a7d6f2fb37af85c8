"""LLM re-rankers (likelihood, verbalizer, listwise), grounding, permutation aggregation, blending, and the
distilled student that re-ranks without a language model."""

from recllm.rerank.base import (
    Attempt,
    Grounded,
    LLMReranker,
    Reranker,
    RerankError,
    RerankRequest,
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
from recllm.rerank.distilled import DistilledReranker, StudentFeatures
from recllm.rerank.factory import RERANKERS, create_reranker, reranker_names, reranker_needs_llm
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
    "DistilledReranker",
    "Grounded",
    "LLMReranker",
    "LikelihoodReranker",
    "LikelihoodScores",
    "ListwiseReranker",
    "ParsedRanking",
    "PermutationAggregator",
    "RankingParser",
    "RerankError",
    "RerankRequest",
    "RerankResult",
    "Reranker",
    "StudentFeatures",
    "VerbalizerReranker",
    "aggregate_rankings",
    "blend_scores",
    "choose_blend_weight",
    "create_reranker",
    "ground",
    "normalize_scores",
    "parse_ranking",
    "reranker_names",
    "reranker_needs_llm",
    "summarize_diagnostics",
]
