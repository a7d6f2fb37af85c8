"""``LLMBackendContract`` and ``EmbedderContract``: what every ``recllm.llm.base.LLM`` backend and every
``recllm.llm.base.Embedder`` must do, as pytest mixins.

The generation checks use a handful of short greedy requests; the scoring checks run only where the backend
says it can score (``can_score``), and a backend that cannot must refuse scoring with a ``CapabilityError``.
"""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pytest

from recllm.llm.base import LLM, CapabilityError, Completion, Embedder, GenerationRequest, LLMError

__all__ = ["EmbedderContract", "LLMBackendContract"]

_LOGPROB_SLACK = 1e-6
"""Rounding allowed above 0 for a log-probability (a probability of 1 computed in float32)."""


class LLMBackendContract:
    """Mixin of contract tests for an ``recllm.llm.base.LLM`` backend.

    Override ``make_llm`` (or, to reuse a fixture such as a session-wide model, the class-scoped
    ``contract_llm`` fixture). The prompts are plain English; ``continuation`` and ``extension`` must be
    whitespace-separated words (so a tokenizer that splits at spaces tokenises ``continuation`` as a prefix of
    ``continuation + extension``), and ``labels`` must be single tokens for the model.
    ``score_tolerance`` bounds how far the same log-probability may move between two calls (batching).
    """

    max_new_tokens: ClassVar[int] = 6
    prompt: ClassVar[str] = "The capital of France is"
    question: ClassVar[str] = "Name one colour of the rainbow."
    continuation: ClassVar[str] = " Paris"
    extension: ClassVar[str] = " and"
    labels: ClassVar[tuple[str, ...]] = ("A", "B", "C")
    score_tolerance: ClassVar[float] = 1e-4

    # ---- hooks ------------------------------------------------------------------------------------
    def make_llm(self) -> LLM:
        """The backend under test."""
        raise NotImplementedError(f"{type(self).__name__} must override make_llm() (or the contract_llm fixture)")

    @pytest.fixture(scope="class")
    @classmethod
    def contract_llm(cls) -> LLM:
        """The backend under test, built once per test class."""
        return cls().make_llm()

    def requests(self) -> list[GenerationRequest]:
        """A chat request and a raw-text request, both greedy and short, the second with a stop string."""
        return [GenerationRequest.chat([{"role": "user", "content": self.question}],
                                       max_new_tokens=self.max_new_tokens),
                GenerationRequest.text(self.prompt, max_new_tokens=self.max_new_tokens, stop=(".",))]

    # ---- identity ---------------------------------------------------------------------------------
    def test_the_backend_names_itself_and_its_capabilities(self, contract_llm: LLM) -> None:
        assert isinstance(contract_llm.backend, str) and contract_llm.backend
        assert isinstance(contract_llm.model_name, str) and contract_llm.model_name
        assert isinstance(contract_llm.can_score, bool) and isinstance(contract_llm.can_schema, bool)
        length = contract_llm.context_length
        assert length is None or (isinstance(length, int) and length > 0)

    def test_token_counts_are_natural_numbers(self, contract_llm: LLM) -> None:
        assert contract_llm.count_tokens("") == 0
        short, long = contract_llm.count_tokens("Paris"), contract_llm.count_tokens("Paris is in France. " * 4)
        assert isinstance(short, int) and short >= 1
        assert long > short

    # ---- generation -------------------------------------------------------------------------------
    def test_one_completion_per_request_within_the_token_limit(self, contract_llm: LLM) -> None:
        requests = self.requests()
        calls_before = contract_llm.usage.generate_calls
        completions = contract_llm.generate(requests)
        assert len(completions) == len(requests)
        for request, completion in zip(requests, completions, strict=True):
            assert isinstance(completion, Completion) and isinstance(completion.text, str)
            assert completion.finish_reason in ("stop", "length")
            assert isinstance(completion.prompt_tokens, int) and completion.prompt_tokens > 0
            assert isinstance(completion.completion_tokens, int)
            assert 0 <= completion.completion_tokens <= request.max_new_tokens
            assert not any(stop in completion.text for stop in request.stop)
            assert Completion.from_dict(json.loads(json.dumps(completion.to_dict()))) == completion
        assert contract_llm.usage.generate_calls - calls_before == len(requests)

    def test_greedy_generation_is_deterministic(self, contract_llm: LLM) -> None:
        request = self.requests()[0]
        first, second = contract_llm.generate([request])[0], contract_llm.generate([request])[0]
        assert first == second

    def test_no_requests_give_no_completions_and_bad_requests_are_errors(self, contract_llm: LLM) -> None:
        assert contract_llm.generate([]) == []
        with pytest.raises(LLMError):
            contract_llm.generate([self.prompt])  # type: ignore[list-item]

    def test_json_schema_needs_can_schema(self, contract_llm: LLM) -> None:
        if contract_llm.can_schema:
            pytest.skip("the backend honours JSON schemas")
        request = GenerationRequest.text(self.prompt, max_new_tokens=2, json_schema={"type": "object"})
        with pytest.raises(CapabilityError):
            contract_llm.generate([request])

    def test_a_json_schema_is_followed_when_honoured(self, contract_llm: LLM) -> None:
        if not contract_llm.can_schema:
            pytest.skip("the backend does not honour JSON schemas")
        schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"],
                  "additionalProperties": False}
        out = contract_llm.generate([GenerationRequest.text(self.prompt, max_new_tokens=32, json_schema=schema)])
        assert json.loads(out[0].text) in ({"answer": "yes"}, {"answer": "no"})

    def test_a_grammar_is_followed_or_refused(self, contract_llm: LLM) -> None:
        request = GenerationRequest.text(self.prompt, max_new_tokens=8, grammar='start: "red" | "green" | "blue"')
        if not contract_llm.can_grammar:
            with pytest.raises(CapabilityError):
                contract_llm.generate([request])
            return
        assert contract_llm.generate([request])[0].text in {"red", "green", "blue"}

    # ---- scoring ----------------------------------------------------------------------------------
    def test_scoring_without_can_score_is_a_capability_error(self, contract_llm: LLM) -> None:
        if contract_llm.can_score:
            pytest.skip("the backend can score")
        with pytest.raises(CapabilityError):
            contract_llm.logprobs(self.prompt, [self.continuation])
        with pytest.raises(CapabilityError):
            contract_llm.next_token_logprobs(self.prompt, list(self.labels))

    def _scorer(self, llm: LLM) -> LLM:
        if not llm.can_score:
            pytest.skip("the backend cannot score (can_score is False)")
        return llm

    def test_logprobs_are_finite_non_positive_float64(self, contract_llm: LLM) -> None:
        llm = self._scorer(contract_llm)
        continuations = [self.continuation, " London", self.continuation + self.extension, ""]
        scores = llm.logprobs(self.prompt, continuations)
        assert isinstance(scores, np.ndarray) and scores.dtype == np.float64
        assert scores.shape == (len(continuations),)
        assert np.isfinite(scores).all() and (scores <= _LOGPROB_SLACK).all()
        assert scores[-1] == 0.0  # an empty continuation is certain
        assert llm.logprobs(self.prompt, []).shape == (0,)

    def test_extending_a_continuation_never_makes_it_likelier(self, contract_llm: LLM) -> None:
        llm = self._scorer(contract_llm)
        base, longer = llm.logprobs(self.prompt, [self.continuation, self.continuation + self.extension])
        assert longer <= base + self.score_tolerance

    def test_a_continuation_scores_the_same_alone_and_with_others(self, contract_llm: LLM) -> None:
        llm = self._scorer(contract_llm)
        together = llm.logprobs(self.prompt, [" London", self.continuation + self.extension, self.continuation])
        alone = llm.logprobs(self.prompt, [self.continuation])
        again = llm.logprobs(self.prompt, [self.continuation])
        np.testing.assert_allclose(alone, together[2:], rtol=0, atol=self.score_tolerance)
        np.testing.assert_allclose(again, alone, rtol=0, atol=self.score_tolerance)

    def test_several_prompts_score_as_each_alone(self, contract_llm: LLM) -> None:
        llm = self._scorer(contract_llm)
        jobs = [(self.prompt, [self.continuation, "", " London"]), ("Pick a letter:", []),
                ("A longer prompt, so that the prompts differ: " + self.prompt, [self.continuation + self.extension]),
                ("Pick a letter:", list(self.labels))]
        together = llm.logprobs_many(jobs)
        assert len(together) == len(jobs)
        for (prompt, continuations), scores in zip(jobs, together, strict=True):
            assert scores.dtype == np.float64 and scores.shape == (len(continuations),)
            np.testing.assert_allclose(scores, llm.logprobs(prompt, continuations), rtol=0, atol=self.score_tolerance)
        assert llm.logprobs_many([]) == []
        with pytest.raises(LLMError, match=r"jobs\[1\]"):
            llm.logprobs_many([(self.prompt, [self.continuation]), ("", [self.continuation])])

    def test_next_token_logprobs_are_a_sub_distribution(self, contract_llm: LLM) -> None:
        llm = self._scorer(contract_llm)
        labels = list(self.labels)
        scores = llm.next_token_logprobs("Pick a letter:", labels)
        assert scores.dtype == np.float64 and scores.shape == (len(labels),)
        assert np.isfinite(scores).all() and (scores <= _LOGPROB_SLACK).all()
        assert np.logaddexp.reduce(scores) <= _LOGPROB_SLACK  # distinct tokens: their probabilities sum to <= 1
        np.testing.assert_allclose(llm.next_token_logprobs("Pick a letter:", labels[::-1]), scores[::-1],
                                   rtol=0, atol=self.score_tolerance)
        assert llm.next_token_logprobs("Pick a letter:", []).shape == (0,)

    def test_scoring_is_counted_in_usage(self, contract_llm: LLM) -> None:
        llm = self._scorer(contract_llm)
        before = llm.usage.as_dict()
        llm.logprobs(self.prompt, [self.continuation])
        after = llm.usage.as_dict()
        assert after["score_calls"] > before["score_calls"]
        assert after["scored_tokens"] > before["scored_tokens"]


class EmbedderContract:
    """Mixin of contract tests for an ``recllm.llm.base.Embedder``: ``embed(texts)`` gives one unit-length
    float32 row of length ``dim`` per text, the same row for the same text whatever else is in the batch.

    Override ``make_embedder`` (or the class-scoped ``contract_embedder`` fixture).
    """

    texts: ClassVar[tuple[str, ...]] = ("A space opera with rebels and an evil empire.",
                                        "A quiet family drama on a farm.", "")
    tolerance: ClassVar[float] = 1e-5

    def make_embedder(self) -> Embedder:
        """The embedder under test."""
        raise NotImplementedError(f"{type(self).__name__} must override make_embedder() (or the "
                                  "contract_embedder fixture)")

    @pytest.fixture(scope="class")
    @classmethod
    def contract_embedder(cls) -> Embedder:
        """The embedder under test, built once per test class."""
        return cls().make_embedder()

    def test_one_unit_float32_row_per_text(self, contract_embedder: Embedder) -> None:
        vectors = contract_embedder.embed(list(self.texts))
        dim = contract_embedder.dim
        assert isinstance(dim, int) and dim > 0
        assert vectors.dtype == np.float32 and vectors.shape == (len(self.texts), dim)
        assert np.isfinite(vectors).all()
        np.testing.assert_allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-4)
        assert contract_embedder.embed([]).shape == (0, dim)

    def test_a_text_embeds_the_same_alone_and_in_a_batch(self, contract_embedder: Embedder) -> None:
        batch = contract_embedder.embed(list(self.texts))
        alone = contract_embedder.embed([self.texts[1]])
        np.testing.assert_allclose(alone[0], batch[1], rtol=0, atol=self.tolerance)
        np.testing.assert_allclose(contract_embedder.embed(list(self.texts)), batch, rtol=0, atol=self.tolerance)

    def test_a_bare_string_is_an_error(self, contract_embedder: Embedder) -> None:
        with pytest.raises(LLMError):
            contract_embedder.embed(self.texts[0])
