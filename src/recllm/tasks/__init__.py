"""LLM tasks beyond ranking: rating prediction, checked explanations, zero-shot next-item."""

from recllm.tasks.explain import Explainer, Explanation, ExplanationChecker, template_explanation
from recllm.tasks.next_item import NextItemResult, ZeroShotNextItem
from recllm.tasks.rating import ParsedRating, RatingBatch, RatingPredictor, TaskError, parse_rating
from recllm.tasks.titles import Mention, TitleScanner

__all__ = [
    "Explainer",
    "Explanation",
    "ExplanationChecker",
    "Mention",
    "NextItemResult",
    "ParsedRating",
    "RatingBatch",
    "RatingPredictor",
    "TaskError",
    "TitleScanner",
    "ZeroShotNextItem",
    "parse_rating",
    "template_explanation",
]
