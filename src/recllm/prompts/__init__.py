"""Prompts: templates as data per task and variant, behaviour injection, few-shot selection, token budgets."""

from recllm.prompts.builder import PromptBuilder, PromptConfig
from recllm.prompts.fewshot import Demonstration, FewShotSelector, as_history, user_history
from recllm.prompts.labels import (
    LABEL_STYLES,
    TokenCounter,
    check_single_tokens,
    estimate_tokens,
    piece_counter,
    verbalizer_labels,
)
from recllm.prompts.prompt import HistoryEntry, HistoryLike, Prompt, PromptError, TrimReport
from recllm.prompts.templates import (
    TASKS,
    VARIANTS,
    Template,
    available_templates,
    builtin_template_dir,
    load_template,
    load_template_file,
    parse_template,
)

__all__ = [
    "LABEL_STYLES",
    "TASKS",
    "VARIANTS",
    "Demonstration",
    "FewShotSelector",
    "HistoryEntry",
    "HistoryLike",
    "Prompt",
    "PromptBuilder",
    "PromptConfig",
    "PromptError",
    "Template",
    "TokenCounter",
    "TrimReport",
    "as_history",
    "available_templates",
    "builtin_template_dir",
    "check_single_tokens",
    "estimate_tokens",
    "load_template",
    "load_template_file",
    "parse_template",
    "piece_counter",
    "user_history",
    "verbalizer_labels",
]
