"""TALLRec-style evaluation: P(Yes) against P(No) after a yes/no prompt, summarised by AUC.

Each ``yesno`` example is scored by the next-token log-probabilities of the two answer words after the prompt
as the model reads it (one forward pass per example); the score is log P(Yes) - log P(No), so the AUC does not
depend on how much probability mass the model puts on other tokens. AUC is the Mann-Whitney statistic with
ties counted as one half, computed here with numpy (scikit-learn is not a dependency).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recllm.errors import ConfigError
from recllm.llm.base import LLM
from recllm.train.instructions import Example

log = logging.getLogger(__name__)


def auc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random negative (ties 1/2).

    Raises ConfigError when the labels are not 0/1, the lengths differ, or one class is missing.
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ConfigError(f"AUC needs labels and scores of the same length, got shapes {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ConfigError("AUC labels must be 0 or 1")
    if not np.isfinite(s).all():
        raise ConfigError("AUC scores must be finite")
    n_pos = int((y == 1).sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ConfigError(f"AUC needs both classes; got {n_pos} positive and {n_neg} negative labels")
    ranks = _average_ranks(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    start = 0
    while start < len(values):
        stop = start
        while stop + 1 < len(values) and sorted_values[stop + 1] == sorted_values[start]:
            stop += 1
        ranks[order[start:stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


@dataclass(frozen=True)
class YesNoScores:
    """Per example: ``labels`` (1 liked), ``yes`` and ``no`` log-probabilities, ``score`` = yes - no; and the AUC
    (None when a class is missing), accuracy of "yes when P(Yes) > P(No)", and the mean mass on the two words."""

    labels: np.ndarray
    yes: np.ndarray
    no: np.ndarray
    auc: float | None
    accuracy: float
    answer_mass: float

    @property
    def score(self) -> np.ndarray:
        return self.yes - self.no

    def as_dict(self) -> dict[str, Any]:
        return {"n": len(self.labels), "positives": int(self.labels.sum()), "auc": self.auc,
                "accuracy": self.accuracy, "answer_mass": self.answer_mass}


def score_yes_no(llm: LLM, examples: Sequence[Example], *, yes: str | None = None, no: str | None = None
                 ) -> YesNoScores:
    """Score ``yesno`` examples with ``llm`` (which must score tokens): log P(yes) and log P(no) as the next token.

    ``yes``/``no`` default to the words the examples were built with (their targets). Each answer word must
    be one token for the model (an LLMError names it otherwise).
    """
    items = list(examples)
    if not items:
        raise ConfigError("no yes/no examples to score")
    bad = [i for i, e in enumerate(items) if e.task != "yesno" or e.label is None]
    if bad:
        raise ConfigError(f"examples[{bad[0]}] is a '{items[bad[0]].task}' example; score_yes_no needs yesno examples")
    yes_word = yes or next((e.target for e in items if e.label == 1), None) or "Yes"
    no_word = no or next((e.target for e in items if e.label == 0), None) or "No"
    values = np.array([llm.next_token_logprobs(e.render(llm), [yes_word, no_word]) for e in items])
    labels = np.array([int(e.label or 0) for e in items])
    score = values[:, 0] - values[:, 1]
    both = 0 < labels.sum() < len(labels)
    result = YesNoScores(labels=labels, yes=values[:, 0], no=values[:, 1], auc=auc(labels, score) if both else None,
                         accuracy=float(((score > 0).astype(int) == labels).mean()),
                         answer_mass=float(np.exp(values).sum(axis=1).mean()))
    if not both:
        log.warning("yes/no scoring: all %d examples have the same label; AUC is undefined", len(items))
    return result
