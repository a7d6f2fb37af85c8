"""Likelihood re-ranking: score each candidate by how likely the model finds its title after the history.

The ``rank-likelihood`` prompt ends where the next title begins ("Next movie:"); every candidate's title
(" The Matrix (1999)") is scored as a continuation in one ``llm.logprobs`` call per user, so the backend runs
the history prompt once and scores all titles against its key/value cache.

Calibration (default on): a small model finds famous titles likely whatever the history says. The score is
therefore the title's log-likelihood after the history minus its log-likelihood after the same template
with an empty history (the "prior"): log p(t | h) - log p(t) = log p(h | t) - log p(h), how much this
history raises the title's chance, a pointwise mutual information. The prior does not depend on the user
and is cached per (prior prompt, title).

Length normalisation (``length_norm``): with ``None`` (default) it is on exactly when calibration is off.
An uncalibrated summed log-probability falls with every token, so long titles lose for being long, and the
per-token mean removes that. After calibration both terms fall alike with length and the difference is the
log-likelihood ratio above, which is not biased by length; dividing it by the token count would only
favour short titles whose few tokens moved a lot. ``True``/``False`` force it either way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recllm.config import checked
from recllm.data.catalog import ItemCatalog
from recllm.data.itemlist import ItemList
from recllm.llm.base import LLM, CapabilityError
from recllm.prompts import Prompt, PromptBuilder, piece_counter
from recllm.rerank.base import Attempt, LLMReranker, RerankError, sort_by_scores

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LikelihoodScores:
    """Per-candidate numbers, in candidate order: ``conditional`` = log p(title | history prompt) summed
    over tokens, ``prior`` = log p(title | history-free prompt) (zeros when not calibrated), ``n_tokens`` of
    each title, and the final ``score`` = (conditional - prior) [/ n_tokens]."""

    candidates: tuple[str, ...]
    conditional: np.ndarray
    prior: np.ndarray
    n_tokens: np.ndarray
    score: np.ndarray
    calibrated: bool
    length_normalised: bool
    prompt_tokens: int
    llm_calls: int
    history_dropped: int


class LikelihoodReranker(LLMReranker):
    """Ranks candidates by the (calibrated) log-likelihood of their titles after the user's history.

    ``calibrate`` subtracts the history-free prior (default True); ``length_norm`` divides by the title's
    token count (None: only when not calibrated; see the module docstring). ``variant`` picks the prompt
    template variant; ``builder`` replaces the prompt builder entirely; ``prompt_options`` go to
    ``PromptBuilder`` (e.g. ``max_history``, ``template``, ``train`` for few-shot).
    """

    kind = "likelihood"

    @checked(skip=("llm", "catalog", "builder"))
    def __init__(self, llm: LLM, catalog: ItemCatalog, *, calibrate: bool = True, length_norm: bool | None = None,
                 variant: str = "zero-shot", builder: PromptBuilder | None = None,
                 prompt_options: Mapping[str, Any] | None = None) -> None:
        super().__init__(llm)
        if not llm.can_score:
            raise CapabilityError(f"likelihood re-ranking needs a backend that scores text; '{llm.backend}' "
                                  f"({llm.model_name}) does not (can_score is False): use 'listwise'")
        self.catalog = catalog
        self.calibrate = calibrate
        self.length_norm = (not calibrate) if length_norm is None else length_norm
        self.builder = self._prompt_builder(builder, "rank-likelihood", catalog, variant, llm,
                                            **dict(prompt_options or {}))
        self._count = piece_counter(llm)
        self._prior: dict[tuple[str, str], float] = {}
        self._tokens: dict[str, int] = {}

    @property
    def prior_cache_size(self) -> int:
        """Number of cached history-free title log-likelihoods."""
        return len(self._prior)

    def clear_prior_cache(self) -> None:
        """Forget the cached priors (e.g. after changing the model behind ``llm``)."""
        self._prior.clear()

    @property
    def scores_jointly(self) -> bool:
        """Several users' prompts go to the model in one ``logprobs_many`` call, joint where the model is."""
        return self.llm.scores_prompts_jointly

    def score(self, history: list[str], candidates: ItemList | list[str], *, user: object | None = None
              ) -> LikelihoodScores:
        """The scores of every candidate for one user, with the parts they are made of."""
        return self.score_many([(history, candidates, user)])[0]

    def score_many(self, cases: Sequence[tuple[list[str], ItemList | list[str], object | None]]
                   ) -> list[LikelihoodScores]:
        """``score`` for several users, their history prompts scored in one ``logprobs_many`` call."""
        ids = [tuple(c.items) if isinstance(c, ItemList) else tuple(str(i) for i in c) for _, c, _ in cases]
        if not all(ids):
            raise RerankError("likelihood scoring needs at least one candidate")
        prompts = [self.builder.build(history, user=user, candidates=items)
                   for (history, _, user), items in zip(cases, ids, strict=True)]
        conditional = self.llm.logprobs_many([(p.render(self.llm), list(p.continuations)) for p in prompts])
        return [self._scores(items, prompt, values) for items, prompt, values in zip(ids, prompts, conditional,
                                                                                     strict=True)]

    def _scores(self, ids: tuple[str, ...], prompt: Prompt, conditional: np.ndarray) -> LikelihoodScores:
        """One user's scores from the conditional log-likelihoods of the titles (the priors added here)."""
        continuations = list(prompt.continuations)
        calls, prompt_tokens = 1, prompt.n_tokens
        prior = np.zeros(len(ids), dtype=np.float64)
        if self.calibrate:
            prior, extra_tokens, extra_calls = self._priors(ids, continuations)
            prompt_tokens += extra_tokens
            calls += extra_calls
        n_tokens = np.array([self._n_tokens(c) for c in continuations], dtype=np.float64)
        score = conditional - prior
        if self.length_norm:
            score = score / np.maximum(n_tokens, 1.0)
        trim = prompt.trim
        return LikelihoodScores(candidates=ids, conditional=conditional, prior=prior, n_tokens=n_tokens, score=score,
                                calibrated=self.calibrate, length_normalised=self.length_norm,
                                prompt_tokens=prompt_tokens, llm_calls=calls,
                                history_dropped=trim.history_dropped if trim is not None else 0)

    def _priors(self, ids: tuple[str, ...], continuations: list[str]) -> tuple[np.ndarray, int, int]:
        """History-free log-likelihoods of the titles: cached ones reused, the rest scored in one call."""
        free = self.builder.build([], candidates=ids)
        text = free.render(self.llm)
        todo = [c for c in dict.fromkeys(continuations) if (text, c) not in self._prior]
        tokens = calls = 0
        if todo:
            values = self.llm.logprobs(text, todo)
            self._prior.update({(text, c): float(v) for c, v in zip(todo, values, strict=True)})
            tokens, calls = free.n_tokens, 1
            log.debug("scored %d title priors (%d cached)", len(todo), len(self._prior))
        return np.array([self._prior[(text, c)] for c in continuations], dtype=np.float64), tokens, calls

    def _n_tokens(self, continuation: str) -> int:
        if continuation not in self._tokens:
            self._tokens[continuation] = self._count(continuation)
        return self._tokens[continuation]

    def _attempt(self, history: list[str], candidates: ItemList, user: object | None) -> Attempt:
        return self._attempts([(history, candidates, user)])[0]

    def _attempts(self, cases: list[tuple[list[str], ItemList, object | None]]) -> list[Attempt]:
        return [Attempt(proposed=sort_by_scores(scores.candidates, scores.score),
                        scores=dict(zip(scores.candidates, (float(s) for s in scores.score), strict=True)),
                        prompt_tokens=scores.prompt_tokens, llm_calls=scores.llm_calls,
                        history_dropped=scores.history_dropped)
                for scores in self.score_many(list(cases))]
