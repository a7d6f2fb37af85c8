"""The LLM backends and the embedder against ``recllm.testing``'s contracts: the hf backend on the real default
model, and the openai backend talking over HTTP to recllm's own OpenAI-compatible server (uvicorn on a free
loopback port, in a thread, serving that same in-process model), by both of its scoring routes and without
scoring."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import ClassVar

import numpy as np
import pytest
import uvicorn

from recllm.llm import LLM, Completion, Embedder, GenerationRequest
from recllm.llm.hf import HFBackend
from recllm.llm.openai_backend import OpenAIBackend
from recllm.llm.server import create_app
from recllm.testing import EmbedderContract, LLMBackendContract
from servers import free_port


@pytest.fixture(scope="module")
def server_url(llm: LLM) -> Iterator[str]:
    """``create_app(llm)`` behind uvicorn on 127.0.0.1 in a daemon thread; yields the ``/v1`` base URL."""
    server = uvicorn.Server(uvicorn.Config(create_app(llm), host="127.0.0.1", port=free_port(),
                                           log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class TestHFBackend(LLMBackendContract):
    @pytest.fixture(scope="class")
    @classmethod
    def contract_llm(cls, llm: LLM) -> LLM:
        assert llm.backend == "hf"
        return llm


class TestHFBackendScoringPromptsJointly(LLMBackendContract):
    """The hf backend with ``joint_scoring`` on (the GPU default): several prompts in one padded pass."""

    @pytest.fixture(scope="class")
    @classmethod
    def contract_llm(cls, llm: LLM) -> Iterator[LLM]:
        assert isinstance(llm, HFBackend) and not llm.joint_scoring  # off on the CPU unless asked
        llm.joint_scoring = True
        try:
            yield llm
        finally:
            llm.joint_scoring = False

    def test_the_backend_says_it_scores_jointly(self, contract_llm: LLM) -> None:
        assert contract_llm.scores_prompts_jointly


class OverHTTP(LLMBackendContract):
    """The openai backend against the local server, with the given constructor options."""

    options: ClassVar[dict[str, object]] = {}

    @pytest.fixture(scope="class")
    @classmethod
    def contract_llm(cls, server_url: str) -> Iterator[LLM]:
        with OpenAIBackend(server_url, **cls.options) as backend:  # type: ignore[arg-type]
            yield backend


class TestOpenAIBackendWithTheRecllmExtension(OverHTTP):
    options: ClassVar[dict[str, object]] = {"can_score": True}

    def test_several_prompts_go_in_one_request(self, contract_llm: LLM, llm: LLM) -> None:
        before = contract_llm.usage.score_calls
        contract_llm.logprobs_many([("One prompt", [" here", " there"]), ("And another,", [" longer", " one"])])
        assert contract_llm.usage.score_calls == before + 1
        # jointly in one model pass only where the server's own model does (hf: on a GPU)
        assert contract_llm.scores_prompts_jointly is llm.scores_prompts_jointly


class TestOpenAIBackendWithEchoScoring(OverHTTP):
    """Scoring through the plain OpenAI API (``/completions`` with ``echo`` and ``logprobs``), as on vLLM."""

    options: ClassVar[dict[str, object]] = {"can_score": True, "extension": False}

    def test_several_prompts_go_in_one_request(self, contract_llm: LLM) -> None:
        assert contract_llm.scores_prompts_jointly
        before = contract_llm.usage.score_calls
        contract_llm.logprobs_many([("One prompt", [" here", " there"]), ("And another,", [" longer", " one"])])
        assert contract_llm.usage.score_calls == before + 1


class TestOpenAIBackendFindsItsScoringRoute(OverHTTP):
    """The default: the backend asks the server how it scores (recllm's own server: by its extension)."""

    def test_the_default_backend_finds_the_route(self, contract_llm: LLM) -> None:
        assert isinstance(contract_llm, OpenAIBackend)
        assert contract_llm.can_score is True and contract_llm.score_route() == "extension"


class TestOpenAIBackendWithoutScoring(OverHTTP):
    """``can_score=False`` in the spec: scoring is refused with a CapabilityError, whatever the server offers."""

    options: ClassVar[dict[str, object]] = {"can_score": False}

    def test_the_backend_does_not_claim_to_score(self, contract_llm: LLM) -> None:
        assert contract_llm.can_score is False and contract_llm.can_schema is False


class TestSentenceTransformerEmbedder(EmbedderContract):
    @pytest.fixture(scope="class")
    @classmethod
    def contract_embedder(cls, embedder: Embedder) -> Embedder:
        return embedder


class TestLanguageModelEmbedder(EmbedderContract):
    """Mean hidden states of the default model (embedder ``lm``), built by name as configurations build it."""

    tolerance = 1e-4  # a padded batch and a single text take slightly different float paths

    def make_embedder(self) -> Embedder:
        from recllm.llm import create_embedder

        return create_embedder("lm", batch_size=2)


# ---- the contract catches broken backends -----------------------------------------------------------------
class Careless(LLM):
    """Writes one token past the limit and gives continuations a log-probability above 0."""

    backend = "careless"

    def __init__(self) -> None:
        super().__init__("careless-1")

    @property
    def can_score(self) -> bool:
        return True

    def _generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        return [Completion("word " * (r.max_new_tokens + 1), "length", 5, r.max_new_tokens + 1) for r in requests]

    def _logprobs(self, prompt: str, continuations: list[str]) -> np.ndarray:
        return np.full(len(continuations), 0.5)


class Unchecked(LLMBackendContract):
    """The contract, called by hand (never collected: no Test prefix)."""


@pytest.mark.parametrize("check", [Unchecked.test_one_completion_per_request_within_the_token_limit,
                                   Unchecked.test_logprobs_are_finite_non_positive_float64])
def test_the_contract_fails_a_careless_backend(check: Callable[[Unchecked, LLM], None]) -> None:
    with pytest.raises(AssertionError):
        check(Unchecked(), Careless())
