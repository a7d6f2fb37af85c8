"""Token counting for prompts, and verbalizer labels that are each exactly one token for a model.

Verbalizer scoring (LlamaRec) reads the next-token log-probability of each candidate's label, so every label
must be one token as it follows the prompt: "A" straight after the assistant turn begins, " A" after an
answer prefix such as "Answer:". Which strings are single tokens depends on the tokenizer (SmolLM2 splits
" 1" into a space and a digit), so labels are checked with the model's own tokenizer.
"""

from __future__ import annotations

import logging
import math
import string
from collections.abc import Callable, Sequence
from typing import Any

from recllm.llm.base import LLM
from recllm.prompts.prompt import PromptError

log = logging.getLogger(__name__)

TokenCounter = Callable[[str], int]
LABEL_STYLES = ("letters", "numbers", "lowercase", "mixed", "auto")
_ALPHABETS = {"letters": string.ascii_uppercase, "lowercase": string.ascii_lowercase,
              "mixed": string.ascii_uppercase + string.ascii_lowercase}


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token), used when neither a model nor a counter is given."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def _tokenizer_of(llm: LLM) -> Any | None:
    """The transformers tokenizer behind ``llm`` (also through wrappers such as CachedLLM), if it has one."""
    seen = 0
    current: Any = llm
    while current is not None and seen < 4:
        tokenizer = getattr(current, "tokenizer", None)
        if tokenizer is not None and callable(tokenizer):
            return tokenizer
        current = getattr(current, "inner", None)
        seen += 1
    return None


def piece_counter(source: LLM | TokenCounter) -> TokenCounter:
    """Counts the tokens of a piece of text that follows other text (no special tokens such as BOS).

    With a transformers tokenizer behind the LLM the count is exact; otherwise the counter's fixed overhead
    (what it adds to any text) is measured on "a", a single token in every common tokenizer, and subtracted.
    """
    if isinstance(source, LLM):
        tokenizer = _tokenizer_of(source)
        if tokenizer is not None:
            return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
        count: TokenCounter = source.count_tokens
    else:
        count = source
    overhead = max(0, count("a") - 1)
    return lambda text: count(text) - overhead if text else 0


def _token_ids(source: LLM | TokenCounter, text: str) -> tuple[int, ...] | None:
    tokenizer = _tokenizer_of(source) if isinstance(source, LLM) else None
    if tokenizer is None:
        return None
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


def verbalizer_labels(n: int, source: LLM | TokenCounter | None = None, *, style: str = "letters",
                      leading_space: bool = False) -> tuple[str, ...]:
    """``n`` distinct labels ("A", "B", ... or "1", "2", ...) that are each one token for ``source``'s tokenizer.

    ``leading_space`` checks the labels as they follow an answer prefix (" A"); the labels returned are
    always without the space. ``style="auto"`` tries letters, then numbers, then letters and lowercase
    letters together. Without ``source`` nothing can be checked and the style's labels are returned.
    Raises PromptError naming the first label that is not one token, or the style's capacity.
    """
    if not isinstance(n, int) or n < 1:
        raise PromptError(f"number of verbalizer labels must be a positive integer, got {n!r}")
    if style == "auto":
        problems = []
        for option in ("letters", "numbers", "mixed"):
            try:
                return _checked(n, source, option, leading_space)
            except PromptError as exc:
                problems.append(str(exc))
        raise PromptError(f"no label style gives {n} single-token labels: " + "; ".join(problems))
    if style not in LABEL_STYLES:
        raise PromptError(f"unknown label style '{style}'; styles: {', '.join(LABEL_STYLES)}")
    return _checked(n, source, style, leading_space)


def _checked(n: int, source: LLM | TokenCounter | None, style: str, leading_space: bool) -> tuple[str, ...]:
    if style in _ALPHABETS:
        alphabet = _ALPHABETS[style]
        if n > len(alphabet):
            raise PromptError(f"label style '{style}' has only {len(alphabet)} labels, {n} needed")
        labels = list(alphabet[:n])
    else:  # numbers
        labels = [str(i) for i in range(1, n + 1)]
    if source is None:
        log.debug("verbalizer labels not checked: no tokenizer given")
        return tuple(labels)
    count = piece_counter(source)
    space = " " if leading_space else ""
    seen: dict[tuple[int, ...], str] = {}
    for label in labels:
        text = space + label
        n_tokens = count(text)
        if n_tokens != 1:
            good = labels.index(label)
            raise PromptError(f"label {text!r} (style '{style}') is {n_tokens} tokens for {_name(source)}; "
                              f"only the first {good} labels of this style are single tokens, {n} needed")
        ids = _token_ids(source, text)
        if ids is not None:
            if ids in seen:
                raise PromptError(f"labels {seen[ids]!r} and {label!r} are the same token for {_name(source)}")
            seen[ids] = label
    return tuple(labels)


def _name(source: LLM | TokenCounter) -> str:
    return source.model_name if isinstance(source, LLM) else getattr(source, "__name__", "the given counter")


def check_single_tokens(texts: Sequence[str], source: LLM | TokenCounter) -> None:
    """Raise PromptError naming the first text that is not exactly one token for ``source``."""
    count = piece_counter(source)
    for text in texts:
        n_tokens = count(text)
        if n_tokens != 1:
            raise PromptError(f"{text!r} is {n_tokens} tokens for {_name(source)}; a single token is needed")
