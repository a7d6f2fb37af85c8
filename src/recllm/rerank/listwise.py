"""Listwise re-ranking (Chat-Rec style): the model writes the ranked list, which is parsed tolerantly.

The ``rank-listwise`` prompt shows the candidates as "[1] Title (year); genres: ..." and asks for the numbers
of the top ``k``, best first (one a line, or JSON with ``output="json"``). The answer is generated greedily
and read by ``recllm.rerank.parsing.RankingParser`` (indices, labels, fuzzy titles, JSON, prose);
grounding then drops what is not a candidate and repeats, and appends what the model left out in retriever
order, counting each. This works with any backend, including those that cannot score text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field

from recllm.config import checked
from recllm.data.catalog import ItemCatalog
from recllm.data.itemlist import ItemList
from recllm.llm.base import LLM
from recllm.prompts import PromptBuilder
from recllm.rerank.base import Attempt, LLMReranker
from recllm.rerank.parsing import ParsedRanking, RankingParser

log = logging.getLogger(__name__)


class ListwiseReranker(LLMReranker):
    """Asks the model for a ranked list of the candidates and grounds what it writes.

    ``k``: how many the model is asked to list (None: all; the rest are filled in retriever order);
    ``output``: the template's output format (``"lines"`` default, or ``"json"``); ``max_new_tokens``: the
    generation limit (None: the template's answer reserve for ``k`` candidates); ``fuzzy_cutoff``: title
    similarity needed to match a candidate. ``variant`` ("zero-shot", "few-shot", "chain-of-thought"),
    ``builder`` and ``prompt_options`` as for ``LikelihoodReranker``. ``constrain``: on a backend that follows
    grammars (``can_grammar``), the answer is decoded so that it can only be ``k`` candidate labels (lines, or
    the JSON form), so it never names an item outside the candidates; the chain-of-thought variant, whose
    reasoning is free text, is never constrained.
    """

    kind = "listwise"

    @checked(skip=("llm", "catalog", "builder"))
    def __init__(self, llm: LLM, catalog: ItemCatalog, *, k: Annotated[int, Field(ge=1)] | None = None,
                 output: str | None = None, max_new_tokens: Annotated[int, Field(ge=1)] | None = None,
                 fuzzy_cutoff: Annotated[float, Field(gt=0, le=1)] = 0.75, variant: str = "zero-shot",
                 builder: PromptBuilder | None = None, prompt_options: Mapping[str, Any] | None = None,
                 constrain: bool = True) -> None:
        super().__init__(llm)
        self.constrain = constrain
        self.catalog = catalog
        self.k = k
        self.max_new_tokens = max_new_tokens
        self.fuzzy_cutoff = fuzzy_cutoff
        self.builder = self._prompt_builder(builder, "rank-listwise", catalog, variant, llm,
                                            output=output, **dict(prompt_options or {}))

    def token_limit(self, n_listed: int) -> int:
        """Generation limit for a list of ``n_listed`` candidates."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        template = self.builder.template
        return max(1, template.answer_tokens + template.answer_tokens_per_candidate * n_listed)

    def constraint(self, labels: tuple[str, ...], k: int) -> dict[str, Any]:
        """The request's constraint: ``k`` of the candidate ``labels`` in the answer format (none when the backend
        cannot follow a grammar, ``constrain`` is off, or the answer starts with free reasoning)."""
        if not self.constrain or self.builder.template.variant == "chain-of-thought":
            return {}
        if self.builder.output == "json" and self.llm.can_schema:
            values = [int(label) if label.isdigit() else label for label in labels]
            return {"json_schema": {"type": "object", "additionalProperties": False, "required": ["ranking"],
                                    "properties": {"ranking": {"type": "array", "items": {"enum": values},
                                                               "minItems": k, "maxItems": k}},
                                    "x-guidance": {"whitespace_flexible": False}}}
        if self.builder.output == "lines" and self.llm.can_grammar:
            choice = " | ".join(json.dumps(label) for label in labels)
            return {"grammar": "start: " + ' "\\n" '.join(["label"] * k) + f"\nlabel: {choice}\n"}
        return {}

    def parse(self, text: str, candidates: tuple[str, ...], labels: tuple[str, ...]) -> ParsedRanking:
        """Read one generated answer against the candidates and labels it was shown with."""
        return RankingParser(candidates, labels, self.catalog, cutoff=self.fuzzy_cutoff).parse(text)

    def _attempt(self, history: list[str], candidates: ItemList, user: object | None) -> Attempt:
        ids = candidates.items
        k = min(self.k or len(ids), len(ids))
        prompt = self.builder.build(history, user=user, candidates=ids, k=k)
        completion = self.llm.generate([prompt.request(self.llm, max_new_tokens=self.token_limit(k),
                                                       temperature=0.0, **self.constraint(prompt.labels, k))])[0]
        parsed = self.parse(completion.text, prompt.candidates, prompt.labels)
        if parsed.format_error:
            log.debug("listwise: unreadable answer %r", completion.text[:200])
        return Attempt(proposed=parsed.items, hallucinated=parsed.hallucinated, outputs=1,
                       format_errors=int(parsed.format_error),
                       prompt_tokens=completion.prompt_tokens or prompt.n_tokens,
                       generated_tokens=completion.completion_tokens, llm_calls=1,
                       history_dropped=prompt.trim.history_dropped if prompt.trim is not None else 0,
                       raw_outputs=(completion.text,))
