"""The ``llamacpp`` backend (issue 16, part 2): the pinned default GGUF run as it is by llama.cpp, against the
same contract as the other backends, its scores against the ``hf`` backend's on the same model (which runs the
float weights dequantised from that very file), its key/value cache reuse, JSON-schema output through a GBNF
grammar, and a re-ranker on top. Skipped where llama-cpp-python is not installed (``recllm[llamacpp]``)."""

from __future__ import annotations

import json
import os
import pickle
import sys
from typing import ClassVar

import numpy as np
import pytest
from scipy.stats import kendalltau

from recllm.errors import ConfigError
from recllm.llm import LLM, GenerationRequest
from recllm.llm.factory import create_llm
from recllm.testing import LLMBackendContract

if os.environ.get("RECLLM_REQUIRE_LLAMACPP") == "1":
    import llama_cpp  # noqa: F401  (CI installs the extra: its absence is a failure there)
else:
    pytest.importorskip("llama_cpp", reason="the llamacpp extra is not installed: pip install 'recllm[llamacpp]'")

PER_TOKEN = 0.1
"""Largest mean difference in nats per scored token between the llama.cpp and hf log-probabilities of the same
texts: llama.cpp multiplies the 4-bit blocks with 8-bit quantised activations, hf their float32 dequantisation
(measured on these titles: 0.04 a token, at most 1.0 on a whole title)."""

PROMPT = ("The user watched, oldest first: Toy Story (1995); Aladdin (1992); The Lion King (1994). "
          "The next film they watch is")
TITLES = [" Beauty and the Beast (1991)", " Pulp Fiction (1994)", " Heat (1995)", " The Little Mermaid (1989)",
          " Star Wars (1977)", " Fargo (1996)"]


@pytest.fixture(scope="module")
def gguf() -> LLM:
    return create_llm("llamacpp")


class TestLlamaCppBackend(LLMBackendContract):
    @pytest.fixture(scope="class")
    @classmethod
    def contract_llm(cls, gguf: LLM) -> LLM:
        return gguf

    score_tolerance: ClassVar[float] = 1e-4


def test_it_names_the_pinned_model_and_what_it_offers(gguf: LLM):
    assert gguf.backend == "llamacpp" and gguf.model_name == "SmolLM2-135M-Instruct-Q4_1"
    assert gguf.can_score and gguf.can_schema and not gguf.can_grammar
    assert gguf.context_length == 4096


def test_scores_agree_with_the_hf_backend_on_the_same_model(gguf: LLM, llm: LLM):
    assert llm.backend == "hf"
    ours, theirs = gguf.logprobs(PROMPT, TITLES), llm.logprobs(PROMPT, TITLES)
    tokens = sum(gguf.count_tokens(t) - gguf.count_tokens("") for t in TITLES)
    assert np.abs(ours - theirs).sum() / tokens < PER_TOKEN
    assert kendalltau(ours, theirs).statistic >= 0.7 and np.argmax(ours) == np.argmax(theirs)
    labels = [" A", " B", " C", " D"]
    question = "Which film comes next? A. Heat B. Fargo C. Aladdin D. Jumanji\nAnswer:"
    ours, theirs = gguf.next_token_logprobs(question, labels), llm.next_token_logprobs(question, labels)
    assert np.abs(ours - theirs).max() < 0.5  # measured 0.32 at most
    assert np.array_equal(np.argsort(ours), np.argsort(theirs))
    assert gguf.count_tokens(PROMPT) == llm.count_tokens(PROMPT)
    messages = [{"role": "user", "content": "Recommend a film."}]
    assert gguf.render_chat(messages) == llm.render_chat(messages)


def test_the_cached_prompt_start_changes_no_score(gguf: LLM):
    first = gguf.logprobs(PROMPT, TITLES)
    gguf.logprobs(PROMPT + " probably", TITLES[:2])  # shares the start: only the rest runs
    gguf.logprobs("A different prompt entirely about", TITLES[:2])  # shares nothing
    np.testing.assert_allclose(gguf.logprobs(PROMPT, TITLES), first, rtol=0, atol=1e-4)
    trailing = gguf.logprobs(PROMPT + " ", [t.lstrip(" ") for t in TITLES])  # spaces move into continuations
    np.testing.assert_allclose(trailing, first, rtol=0, atol=1e-4)


def test_json_schema_output_parses_and_follows_the_schema(gguf: LLM):
    schema = {"type": "object", "properties": {"genres": {"type": "array", "items": {"enum": ["Comedy", "Drama",
              "Horror"]}, "maxItems": 2}, "year": {"type": "integer"}}, "required": ["genres", "year"],
              "additionalProperties": False}
    out = gguf.generate([GenerationRequest.chat(
        [{"role": "user", "content": "I want a funny film from 1995. Reply with JSON."}], max_new_tokens=48,
        json_schema=schema)])[0]
    value = json.loads(out.text)
    assert set(value) == {"genres", "year"} and isinstance(value["year"], int)
    assert set(value["genres"]) <= {"Comedy", "Drama", "Horror"}


def test_a_reranker_runs_on_it(gguf: LLM, ml100k):
    from recllm.data.itemlist import ItemList
    from recllm.rerank import create_reranker

    ids = [str(i) for i in ml100k.dataset.item_vocab.ids[:8]]
    history = [str(i) for i in ml100k.dataset.item_vocab.ids[20:25]]
    reranker = create_reranker("verbalizer", gguf, ml100k.catalog, max_candidates=8)
    result = reranker.rerank(history, ItemList(tuple(ids), np.linspace(1, 0, 8)))
    assert sorted(result.order) == sorted(ids) and result.diagnostics.backend == "llamacpp"


def test_unknown_models_and_a_missing_install_are_clear_errors(monkeypatch):
    with pytest.raises(ConfigError, match="neither a pinned model"):
        create_llm("llamacpp:/no/such/model.gguf")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(ConfigError, match=r"pip install 'recllm\[llamacpp\]'"):
        create_llm("llamacpp")


def test_the_model_does_not_travel_by_pickle(gguf: LLM):
    with pytest.raises(TypeError, match="send its spec"):
        pickle.dumps(gguf)
