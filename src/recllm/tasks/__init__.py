"""LLM tasks beyond ranking: rating prediction, checked explanations, zero-shot next-item, checked item profiles."""

from recllm.tasks.explain import Explainer, Explanation, ExplanationChecker, template_explanation
from recllm.tasks.next_item import NextItemResult, ZeroShotNextItem
from recllm.tasks.profiles import ItemProfile, ProfileReport, ProfileWriter, profiled_catalog, write_profiles
from recllm.tasks.rating import ParsedRating, RatingBatch, RatingPredictor, TaskError, parse_rating
from recllm.tasks.titles import Mention, TitleScanner

__all__ = [
    "Explainer",
    "Explanation",
    "ExplanationChecker",
    "ItemProfile",
    "Mention",
    "NextItemResult",
    "ParsedRating",
    "ProfileReport",
    "ProfileWriter",
    "RatingBatch",
    "RatingPredictor",
    "TaskError",
    "TitleScanner",
    "ZeroShotNextItem",
    "parse_rating",
    "profiled_catalog",
    "template_explanation",
    "write_profiles",
]
