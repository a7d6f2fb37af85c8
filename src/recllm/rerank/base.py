"""The Reranker contract, the result type, and grounding: what every LLM re-ranker shares.

An LLM re-ranker turns the model's answer into an ``Attempt`` (the candidates in the model's order, possibly
with repeats, plus the raw references it could not resolve). ``ground`` then makes the result safe: only
candidates, each once, every candidate present (the ones the model left out appended in retriever order),
with each violation counted. Wrappers (permutation aggregation, blending) implement ``Reranker`` directly.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from recllm.data.catalog import ItemCatalog
from recllm.data.itemlist import ItemList
from recllm.errors import RecllmError
from recllm.llm.base import LLM
from recllm.prompts import PromptBuilder
from recllm.rerank.diagnostics import Diagnostics

log = logging.getLogger(__name__)


class RerankError(RecllmError):
    """A re-ranking call cannot be done as asked (bad input, too many candidates for the labels, ...)."""


@dataclass(frozen=True)
class RerankResult:
    """The re-ranked candidates and what it took to get them.

    ``items`` holds exactly the candidates, best first; its scores are the re-ranker's (log-probabilities,
    calibrated scores, or ``n - position`` for a generated list). The first ``n_ranked`` items were placed
    by the model; the rest were filled in retriever order.
    """

    items: ItemList
    diagnostics: Diagnostics
    n_ranked: int

    @property
    def order(self) -> tuple[str, ...]:
        """The re-ranked item ids, best first."""
        return self.items.items


@dataclass(frozen=True)
class RerankRequest:
    """One user's re-ranking, as ``rerank`` takes it: the history (oldest first), the retriever's candidates
    and the user's id (or None)."""

    history: Sequence[str]
    candidates: ItemList
    user: object | None = None


class Reranker(ABC):
    """Re-orders a retriever's candidates for one user: ``rerank(history, candidates) -> RerankResult``.

    ``history`` is the user's item ids, oldest first; ``candidates`` the retriever's ``ItemList`` (its order
    is the retriever order used for tie-breaking and filling). ``user`` (optional) is the user's id, passed
    on to prompts (it keeps the user out of their own few-shot demonstrations).
    """

    needs_llm: ClassVar[bool] = True
    """False for a re-ranker that runs without a language model (a distilled student)."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Short name for diagnostics and reports, e.g. ``likelihood`` or ``permutation(listwise)``."""

    @abstractmethod
    def rerank(self, history: Sequence[str], candidates: ItemList, *, user: object | None = None) -> RerankResult:
        """The candidates re-ranked for the user with ``history``."""

    @property
    def scores_jointly(self) -> bool:
        """Whether ``rerank_many`` runs its users through the model together (faster than one by one), so that
        a service gathers concurrent requests for it; False where it only loops."""
        return False

    def rerank_many(self, cases: Sequence[RerankRequest]) -> list[RerankResult]:
        """``rerank`` of each case, in order (one model pass for all where ``scores_jointly``)."""
        return [self.rerank(case.history, case.candidates, user=case.user) for case in cases]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


@dataclass(frozen=True)
class Attempt:
    """What the model produced for one user, before grounding.

    ``proposed``: item ids in the model's order (repeats and out-of-set ids allowed; grounding counts them);
    ``hallucinated``: raw references that resolve to no id at all (an unknown title, an index out of range);
    ``scores``: the model's score per candidate, for scoring re-rankers (then ``proposed`` is the candidates
    sorted by it); ``outputs`` and ``format_errors``: generated texts parsed and those unreadable.
    """

    proposed: tuple[str, ...]
    scores: Mapping[str, float] | None = None
    hallucinated: tuple[str, ...] = ()
    outputs: int = 0
    format_errors: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    llm_calls: int = 0
    history_dropped: int = 0
    raw_outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Grounded:
    """A grounded order over exactly the candidates, and the violations removed to get it."""

    order: tuple[str, ...]
    n_ranked: int
    duplicates: int
    outside: tuple[str, ...]
    missing_filled: int
    outside_result: int


def ground(proposed: Iterable[str], candidates: Sequence[str]) -> Grounded:
    """The proposals kept when they are candidates (first occurrence), then every candidate not proposed,
    in the given (retriever) order. Out-of-set proposals and repeats are counted, never kept.

    ``outside_result`` re-checks the final order against the candidates (it is 0 unless this function is
    broken), so reports state a measured grounded hallucination count.
    """
    allowed = {str(c): i for i, c in enumerate(candidates)}
    if len(allowed) != len(candidates):
        raise RerankError("candidates hold the same item twice")
    placed: list[str] = []
    seen: set[str] = set()
    outside: list[str] = []
    duplicates = 0
    for item in proposed:
        item = str(item)
        if item not in allowed:
            outside.append(item)
        elif item in seen:
            duplicates += 1
        else:
            seen.add(item)
            placed.append(item)
    filled = [str(c) for c in candidates if str(c) not in seen]
    order = tuple(placed + filled)
    outside_result = sum(1 for item in order if item not in allowed) + (len(order) - len(set(order)))
    if outside_result or len(order) != len(allowed):
        raise AssertionError(f"grounding produced an invalid order ({outside_result} violations)")
    return Grounded(order=order, n_ranked=len(placed), duplicates=duplicates, outside=tuple(outside),
                    missing_filled=len(filled), outside_result=outside_result)


def positional_scores(n: int) -> np.ndarray:
    """Scores ``n, n-1, ..., 1`` for a list without model scores (best first, all distinct, positive)."""
    return np.arange(n, 0, -1, dtype=np.float64)


def check_inputs(history: Sequence[str], candidates: ItemList) -> list[str]:
    """The history as a list of ids; RerankError for a bare string or a candidates value of the wrong type."""
    if isinstance(history, str | bytes):
        raise RerankError("history must be a list of item ids (oldest first), not one string")
    if not isinstance(candidates, ItemList):
        raise RerankError(f"candidates must be an ItemList (the retriever's output), got {type(candidates).__name__}")
    return [str(h) for h in history]


class LLMReranker(Reranker):
    """Base of the re-rankers that ask a language model: subclasses turn one user into an ``Attempt``.

    ``rerank`` times the call, grounds the attempt, and fills ``Diagnostics`` (scored tokens are read from
    the model's usage counters, so concurrent calls on one model would mix them).
    """

    kind: str = "llm"

    def __init__(self, llm: LLM) -> None:
        self.llm = llm

    @property
    def name(self) -> str:
        return self.kind

    @staticmethod
    def _prompt_builder(builder: PromptBuilder | None, task: str, catalog: ItemCatalog, variant: str, llm: LLM,
                        **options: Any) -> PromptBuilder:
        """The given builder, checked to build ``task`` prompts, or a new one for ``task`` and ``variant``."""
        builder = builder or PromptBuilder(catalog, task, variant, llm=llm, **options)
        if builder.task != task:
            raise RerankError(f"this re-ranker needs a {task} prompt builder, got {builder.task}")
        return builder

    @abstractmethod
    def _attempt(self, history: list[str], candidates: ItemList, user: object | None) -> Attempt:
        """The model's answer for one user (candidates non-empty)."""

    def _attempts(self, cases: list[tuple[list[str], ItemList, object | None]]) -> list[Attempt]:
        """The model's answers for several users (each with candidates); this default asks one after another."""
        return [self._attempt(history, candidates, user) for history, candidates, user in cases]

    def rerank(self, history: Sequence[str], candidates: ItemList, *, user: object | None = None) -> RerankResult:
        return self.rerank_many([RerankRequest(history, candidates, user)])[0]

    def rerank_many(self, cases: Sequence[RerankRequest]) -> list[RerankResult]:
        """Every case's result. Each one's ``latency_s`` is the whole call's (what each user waited); the scored
        tokens of a call for several users are shared among them by their numbers of candidates."""
        histories = [check_inputs(case.history, case.candidates) for case in cases]
        start = time.perf_counter()
        scored_before = self.llm.usage.scored_tokens
        busy = [i for i, case in enumerate(cases) if len(case.candidates)]
        attempts = dict.fromkeys(range(len(cases)), Attempt(proposed=()))
        if busy:
            answers = self._attempts([(histories[i], cases[i].candidates, cases[i].user) for i in busy])
            attempts.update(zip(busy, answers, strict=True))
        latency = time.perf_counter() - start
        scored = max(0, self.llm.usage.scored_tokens - scored_before)
        shares = np.array([len(case.candidates) for case in cases], dtype=np.float64)
        shares = shares / shares.sum() if shares.sum() else np.full(len(cases), 1 / max(len(cases), 1))
        return [self._result(attempts[i], case.candidates, latency, round(scored * share))
                for i, (case, share) in enumerate(zip(cases, shares, strict=True))]

    def _result(self, attempt: Attempt, candidates: ItemList, latency: float, scored_tokens: int) -> RerankResult:
        """The attempt grounded in the candidates, with its diagnostics."""
        grounded = ground(attempt.proposed, candidates.items)
        n = len(grounded.order)
        if attempt.scores is not None and all(item in attempt.scores for item in grounded.order):
            scores = np.array([attempt.scores[item] for item in grounded.order], dtype=np.float64)
        else:
            scores = positional_scores(n)
        items = ItemList(grounded.order, scores)
        hallucinated = attempt.hallucinated + grounded.outside
        diagnostics = Diagnostics(
            reranker=self.name, model=self.llm.model_name, backend=self.llm.backend, n_candidates=n,
            outputs=attempt.outputs, format_errors=attempt.format_errors,
            mentions=len(attempt.proposed) + len(attempt.hallucinated), hallucinated=hallucinated,
            duplicates=grounded.duplicates, missing_filled=grounded.missing_filled,
            outside_result=grounded.outside_result, latency_s=latency, prompt_tokens=attempt.prompt_tokens,
            generated_tokens=attempt.generated_tokens, scored_tokens=scored_tokens, llm_calls=attempt.llm_calls,
            history_dropped=attempt.history_dropped, raw_outputs=attempt.raw_outputs)
        if hallucinated or grounded.duplicates or attempt.format_errors:
            log.debug("%s: %d hallucinated, %d duplicates, %d format errors, %d filled", self.name,
                      len(hallucinated), grounded.duplicates, attempt.format_errors, grounded.missing_filled)
        return RerankResult(items=items, diagnostics=diagnostics, n_ranked=grounded.n_ranked)


def sort_by_scores(candidates: Sequence[str], scores: np.ndarray) -> tuple[str, ...]:
    """Candidates by score, best first; equal scores keep the given (retriever) order."""
    order = np.lexsort((np.arange(len(candidates)), -np.asarray(scores, dtype=np.float64)))
    return tuple(str(candidates[i]) for i in order)
