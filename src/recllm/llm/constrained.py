"""Grammar-constrained decoding for the transformers backend, through llguidance.

A request's constraint (a JSON schema, or a Lark grammar in llguidance's dialect) is compiled once per request;
during decoding a logits processor asks each row's matcher which tokens may come next and masks every other
token to -inf, so the output follows the grammar by construction. When the grammar is complete the matcher
allows only end-of-sequence, so generation stops there. ``max_new_tokens`` still applies: an output cut by the
length limit can be an unfinished (invalid) prefix, which the completion's ``finish_reason`` ("length") says.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from transformers import LogitsProcessor

from recllm.llm.base import GenerationRequest, LLMError


def constraint_key(request: GenerationRequest) -> str | None:
    """A hashable description of the request's constraint (None: unconstrained), to batch equal ones."""
    if request.json_schema is not None:
        return "json:" + json.dumps(request.json_schema, sort_keys=True)
    if request.grammar is not None:
        return "lark:" + request.grammar
    return None


def compile_grammar(request: GenerationRequest) -> str:
    """The llguidance grammar of a constrained request; an LLMError names a schema or grammar it rejects."""
    import llguidance

    if request.json_schema is not None:
        # compact JSON unless the schema asks otherwise ("x-guidance"): a small model given free whitespace can
        # spend its whole token budget on newlines
        grammar = llguidance.LLMatcher.grammar_from_json_schema(request.json_schema,
                                                                defaults={"whitespace_flexible": False})
        what = "JSON schema"
    elif request.grammar is not None:
        grammar = llguidance.LLMatcher.grammar_from_lark(request.grammar)
        what = "grammar"
    else:
        raise LLMError("this request has no constraint")
    message = llguidance.LLMatcher.validate_grammar(grammar)
    if message:
        raise LLMError(f"the request's {what} cannot be compiled: {message.strip()}")
    return grammar


class GrammarLogitsProcessor(LogitsProcessor):
    """A transformers logits processor: each row's next token is restricted to what its grammar allows.

    ``prompt_width`` is the (left-padded) prompt length: tokens after it are the generated ones, fed to the
    matchers one step at a time. A row that finished (its matcher stopped) is left alone: transformers pads it.
    """

    def __init__(self, tokenizer: Any, grammar: str, rows: int, prompt_width: int) -> None:
        import llguidance
        import llguidance.torch as ll_torch

        self._ll_torch = ll_torch
        self.matchers = [llguidance.LLMatcher(tokenizer, grammar) for _ in range(rows)]
        bad = next((m.get_error() for m in self.matchers if m.is_error()), None)
        if bad:
            raise LLMError(f"the grammar cannot be used: {bad}")
        self.bitmask = ll_torch.allocate_token_bitmask(rows, tokenizer.vocab_size)
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] > self.prompt_width:
            for row, matcher in enumerate(self.matchers):
                if not matcher.is_stopped() and not matcher.is_error():
                    matcher.consume_token(int(input_ids[row, -1]))
        for row, matcher in enumerate(self.matchers):
            self._ll_torch.fill_next_token_bitmask(matcher, self.bitmask, row)
        self._ll_torch.apply_token_bitmask_inplace(scores, self.bitmask.to(scores.device))
        return scores


def llguidance_tokenizer(hf_tokenizer: Any, n_vocab: int, eos_ids: list[int]) -> Any:
    """llguidance's view of a transformers tokenizer, covering all ``n_vocab`` logits and every end token."""
    import llguidance.hf

    return llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=n_vocab, eos_token=list(eos_ids))
