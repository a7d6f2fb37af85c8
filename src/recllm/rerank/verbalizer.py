"""Verbalizer re-ranking (LlamaRec): candidates labelled "A", "B", ...; one forward pass scores them all.

The ``rank-verbalizer`` prompt lists the candidates beside single-token labels and asks for the label of the
best one. Instead of generating, the next-token log-probability of every label is read from one forward
pass (``llm.next_token_logprobs``), and the candidates are ranked by it. It needs one label per candidate,
so at most ``max_candidates`` (20, as in LlamaRec) are scored at once; beyond that it raises, or with
``overflow="split"`` scores consecutive groups of near-equal size separately. Split scores are
log(share of the group's label mass x group size): 0 means "as likely as a uniform pick in its group", so
groups of different sizes compare; still only roughly, as each group is judged without seeing the others.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from recllm.config import checked
from recllm.data.catalog import ItemCatalog
from recllm.data.itemlist import ItemList
from recllm.llm.base import LLM, CapabilityError
from recllm.prompts import PromptBuilder
from recllm.rerank.base import Attempt, LLMReranker, RerankError, sort_by_scores

log = logging.getLogger(__name__)

Overflow = Literal["error", "split"]


class VerbalizerReranker(LLMReranker):
    """Ranks candidates by the next-token log-probability of their labels after the verbalizer prompt.

    ``max_candidates``: most candidates per forward pass (one single-token label each); ``overflow``:
    ``"error"`` (default) or ``"split"`` beyond it; ``label_style``: letters (default), numbers, ... as
    ``verbalizer_labels`` offers, checked to be single tokens for this model. ``variant``, ``builder`` and
    ``prompt_options`` as for ``LikelihoodReranker``. Scores are raw label log-probabilities (in one pass),
    or the lift over a uniform pick within each group (split; see the module docstring).
    """

    kind = "verbalizer"

    @checked(skip=("llm", "catalog", "builder"))
    def __init__(self, llm: LLM, catalog: ItemCatalog, *, max_candidates: Annotated[int, Field(ge=1)] = 20,
                 overflow: Overflow = "error",
                 label_style: str = "letters", variant: str = "zero-shot", builder: PromptBuilder | None = None,
                 prompt_options: Mapping[str, Any] | None = None) -> None:
        super().__init__(llm)
        if not llm.can_score:
            raise CapabilityError(f"verbalizer re-ranking needs next-token log-probabilities; '{llm.backend}' "
                                  f"({llm.model_name}) does not offer them (can_score is False): use 'listwise'")
        self.catalog = catalog
        self.max_candidates = max_candidates
        self.overflow = overflow
        self.builder = self._prompt_builder(builder, "rank-verbalizer", catalog, variant, llm,
                                            label_style=label_style, **dict(prompt_options or {}))

    def _attempt(self, history: list[str], candidates: ItemList, user: object | None) -> Attempt:
        ids = candidates.items
        n = len(ids)
        if n > self.max_candidates and self.overflow == "error":
            raise RerankError(f"verbalizer re-ranking scores at most {self.max_candidates} candidates (one "
                              f"single-token label each), got {n}: pass fewer (the retriever's top "
                              f"{self.max_candidates}), raise max_candidates, or use overflow='split'")
        n_groups = -(-n // self.max_candidates)
        bounds = np.linspace(0, n, n_groups + 1).round().astype(int)
        groups = [ids[bounds[g]:bounds[g + 1]] for g in range(n_groups)]
        scores = np.zeros(n, dtype=np.float64)
        prompt_tokens = dropped = 0
        offset = 0
        for group in groups:
            prompt = self.builder.build(history, user=user, candidates=group)
            values = self.llm.next_token_logprobs(prompt.render(self.llm), list(prompt.choices))
            if len(groups) > 1:
                values = values - np.logaddexp.reduce(values) + np.log(len(group))  # lift over uniform
            scores[offset:offset + len(group)] = values
            offset += len(group)
            prompt_tokens += prompt.n_tokens
            if prompt.trim is not None:
                dropped = max(dropped, prompt.trim.history_dropped)
        if len(groups) > 1:
            log.debug("verbalizer: %d candidates scored in %d groups", n, len(groups))
        return Attempt(proposed=sort_by_scores(ids, scores),
                       scores=dict(zip(ids, (float(s) for s in scores), strict=True)),
                       prompt_tokens=prompt_tokens, llm_calls=len(groups), history_dropped=dropped)
