"""Rating prediction with an LLM: the expected rating from the digits' next-token probabilities, or a
number parsed from generated text with a counted fallback."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from recllm.data.catalog import ItemCatalog
from recllm.errors import RecllmError
from recllm.llm.base import LLM
from recllm.models.rating import BiasedBaseline
from recllm.prompts import HistoryEntry, HistoryLike, PromptBuilder, as_history, check_single_tokens

log = logging.getLogger(__name__)

RatingMode = Literal["expected", "generate"]
Fallback = BiasedBaseline | Callable[[str | None, list[HistoryEntry], str], float] | None

_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_NUMBER = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)(?![\d])")
_WORD = re.compile(r"\b(one|two|three|four|five)\b", re.IGNORECASE)


class TaskError(RecllmError):
    """An LLM task cannot run as configured (model lacks a capability, labels are not single tokens)."""


@dataclass(frozen=True)
class ParsedRating:
    """A rating read from generated text: ``value`` (None when unreadable) and whether the text was not
    the bare number asked for (``format_error``)."""

    value: float | None
    format_error: bool


def parse_rating(text: str, scale: tuple[int, int] = (1, 5)) -> ParsedRating:
    """The first number (or number word) on ``scale`` in ``text``; "4/5", "4 out of 5", "Rating: 4.5" are
    read tolerantly but count as format errors; numbers off the scale are skipped."""
    clean = text.strip().rstrip(".")
    low, high = scale
    for match in _NUMBER.finditer(text):
        value = float(match.group(1))
        if low <= value <= high:
            return ParsedRating(value, clean != match.group(1))
    word = _WORD.search(text)
    if word and low <= _WORDS[word.group(1).lower()] <= high:
        return ParsedRating(float(_WORDS[word.group(1).lower()]), True)
    return ParsedRating(None, True)


@dataclass(frozen=True)
class RatingBatch:
    """Predictions for many (history, item) pairs, with what went wrong counted.

    ``distributions`` (expected mode) holds the renormalised probabilities of the scale's values per pair;
    ``digit_mass`` the probability the model put on the digits at all before renormalising.
    """

    predictions: np.ndarray
    mode: str
    format_errors: int = 0
    fallbacks: int = 0
    distributions: np.ndarray | None = None
    digit_mass: np.ndarray | None = None
    raw: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        n = len(self.predictions)
        return {"n": n, "mode": self.mode, "format_errors": self.format_errors, "fallbacks": self.fallbacks,
                "format_error_rate": self.format_errors / n if n else 0.0,
                "fallback_rate": self.fallbacks / n if n else 0.0}


class RatingPredictor:
    """Predicts a user's rating of an item with an LLM from the ``rating`` prompt.

    - ``mode="expected"``: sum of v * p(v) over the scale, p the next-token probabilities of the digits,
      renormalised over them. Needs a scoring backend and digits that are single tokens (checked once).
      ``cue`` is appended to the rendered prompt before scoring (default "Rating:"; with the default small
      model it moves the digits' distribution with the history far more than the bare chat turn does). A cue
      ending in a space ("Rating: ") reads the space and the digit together, the answer a tokenizer that keeps
      the space apart would write (``benchmarks/rating_models.py`` measures both cues).
    - ``mode="generate"``: the model writes an answer, parsed with ``parse_rating``; non-bare answers are
      counted as format errors, unreadable ones fall back to ``fallback`` (a fitted ``BiasedBaseline``,
      used when the user id is given, or a ``(user, history, item) -> float`` callable), else to the
      user's mean rating in the history, else the scale's midpoint; every fallback is counted.
    """

    def __init__(self, llm: LLM, catalog: ItemCatalog, *, mode: RatingMode = "expected", variant: str = "zero-shot",
                 fallback: Fallback = None, cue: str = "Rating:", max_new_tokens: int = 8,
                 scale: tuple[int, int] = (1, 5), **builder_options: Any) -> None:
        if mode not in ("expected", "generate"):
            raise TaskError(f"mode must be 'expected' or 'generate', got {mode!r}")
        self.llm, self.catalog, self.mode, self.fallback = llm, catalog, mode, fallback
        self.cue, self.max_new_tokens, self.scale = cue, max_new_tokens, scale
        self.values = np.arange(scale[0], scale[1] + 1, dtype=np.float64)
        self.builder = PromptBuilder(catalog, "rating", variant, llm=llm, scale=scale, **builder_options)
        if mode == "expected":
            if not llm.can_score:
                raise TaskError(f"mode='expected' needs a backend that scores tokens; {llm!r} cannot. "
                                f"Use mode='generate'")
            try:
                check_single_tokens([str(int(v)) for v in self.values], llm)
            except RecllmError as exc:
                raise TaskError(f"rating digits are not single tokens for {llm.model_name}: {exc}. "
                                f"Use mode='generate'") from exc
        self.format_errors = 0
        self.fallbacks = 0

    def predict(self, user_history: HistoryLike, item: str, *, user: str | None = None) -> float:
        """The predicted rating of ``item`` for a user with ``user_history`` (ids or (id, rating) pairs)."""
        return float(self.predict_many([(user_history, item)], users=[user]).predictions[0])

    def predict_many(self, pairs: Sequence[tuple[HistoryLike, str]],
                     users: Sequence[str | None] | None = None) -> RatingBatch:
        """Predictions for ``(history, item)`` pairs, with format errors and fallbacks counted."""
        users = list(users) if users is not None else [None] * len(pairs)
        if len(users) != len(pairs):
            raise TaskError(f"{len(pairs)} pairs but {len(users)} users")
        histories = [as_history(h) for h, _ in pairs]
        prompts = [self.builder.build(h, target=str(item)) for h, (_, item) in zip(histories, pairs, strict=True)]
        if self.mode == "expected":
            return self.expected([prompt.render(self.llm) + self.cue for prompt in prompts])
        completions = self.llm.generate([p.request(self.llm, max_new_tokens=self.max_new_tokens) for p in prompts])
        preds, errors, fallbacks = [], 0, 0
        for comp, hist, user, (_, item) in zip(completions, histories, users, pairs, strict=True):
            parsed = parse_rating(comp.text, self.scale)
            errors += parsed.format_error
            if parsed.value is None:
                fallbacks += 1
                preds.append(self._fallback(user, hist, str(item)))
                log.debug("unreadable rating %r for item %s: fallback %.3f", comp.text, item, preds[-1])
            else:
                preds.append(parsed.value)
        self.format_errors += errors
        self.fallbacks += fallbacks
        if fallbacks:
            log.info("rating prediction: %d of %d answers unreadable, fallback used", fallbacks, len(pairs))
        return RatingBatch(np.array(preds, dtype=np.float64), "generate", errors, fallbacks,
                           raw=tuple(c.text for c in completions))

    def expected(self, texts: Sequence[str]) -> RatingBatch:
        """Expected ratings after prompts already rendered and cued (e.g. held-out ``rate`` training examples,
        whose prompts are built as this predictor builds them), from the digits' next-token probabilities."""
        if self.mode != "expected" or not self.llm.can_score:
            raise TaskError("expected ratings need mode='expected' and a backend that scores tokens")
        digits = [str(int(v)) for v in self.values]
        dists, mass = [], []
        for text in texts:
            lp = self.llm.next_token_logprobs(text, digits)
            p = np.exp(lp - lp.max())
            dists.append(p / p.sum())
            mass.append(float(np.exp(lp).sum()))
        d = np.array(dists, dtype=np.float64).reshape(len(dists), len(self.values))
        return RatingBatch(d @ self.values, "expected", distributions=d, digit_mass=np.array(mass))

    def _fallback(self, user: str | None, history: list[HistoryEntry], item: str) -> float:
        if isinstance(self.fallback, BiasedBaseline):
            if user is not None:
                return float(self.fallback.predict([user], [item])[0])
        elif self.fallback is not None:
            return float(self.fallback(user, history, item))
        rated = [e.rating for e in history if e.rating is not None]
        if rated:
            return float(np.mean(rated))
        return float(self.values.mean())
