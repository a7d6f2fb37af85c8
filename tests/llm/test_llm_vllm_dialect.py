"""Scoring over an OpenAI-compatible server in vLLM's dialect (issue 16): the route is found by asking the server
(vLLM's ``prompt_logprobs``, an echoed prompt with ``logprobs``, or none), can be named in the ``--llm`` spec
and is checked; the scores are exactly the server's; a likelihood re-ranker runs on it with a plain
``openai:URL`` spec."""

from __future__ import annotations

import numpy as np
import pytest

from recllm.data import Item, ItemCatalog
from recllm.data.itemlist import ItemList
from recllm.errors import ConfigError
from recllm.llm import CapabilityError, create_llm
from recllm.llm.openai_backend import OpenAIBackend
from recllm.rerank import create_reranker
from vllm_double import continuation_score, vllm_double

PROMPT = "The user watched Heat and Alien. The next movie is"
CONTINUATIONS = [" Fargo", " The Godfather", " Twelve Monkeys (1995)", ""]


@pytest.mark.parametrize(("echo", "prompt_logprobs", "route"), [(False, True, "prompt_logprobs"),
                                                                 (True, False, "echo"), (True, True, "echo")])
def test_the_scoring_route_is_found_by_asking_the_server(echo: bool, prompt_logprobs: bool, route: str):
    with vllm_double(echo=echo, prompt_logprobs=prompt_logprobs) as (url, _), OpenAIBackend(url) as backend:
        assert backend.can_score is True and backend.score_route() == route
        scores = backend.logprobs(PROMPT, CONTINUATIONS)
        expected = [continuation_score(PROMPT, c) for c in CONTINUATIONS]
        np.testing.assert_allclose(scores, expected, atol=1e-9)
        labels = backend.next_token_logprobs(PROMPT, [" Yes", " No"])
        np.testing.assert_allclose(labels, [continuation_score(PROMPT, " Yes"), continuation_score(PROMPT, " No")])


def test_a_server_that_cannot_score_says_so_and_a_forced_route_is_checked():
    with vllm_double(echo=False, prompt_logprobs=False) as (url, _):
        with OpenAIBackend(url) as backend:
            assert backend.can_score is False and backend.score_route() is None
        with OpenAIBackend(url, can_score=True) as forced, pytest.raises(CapabilityError, match="does not score by"):
            forced.logprobs(PROMPT, [" Fargo"])
    with vllm_double(echo=True, prompt_logprobs=False) as (url, _), \
            OpenAIBackend(url, score_route="prompt_logprobs") as wrong, \
            pytest.raises(CapabilityError, match="prompt_logprobs"):
        wrong.logprobs(PROMPT, [" Fargo"])
    with pytest.raises(ConfigError, match="can_score=False turns scoring off"):
        OpenAIBackend("http://127.0.0.1:9/v1", model="m", can_score=False, score_route="echo")


def test_the_spec_overrides_discovery_and_is_validated():
    with vllm_double() as (url, server):
        off = create_llm(f"openai:{url},can_score=false")
        assert off.can_score is False and not any("prompt_logprobs" in body for _, body in server.requests)
        named = create_llm(f"openai:{url},score_route=prompt_logprobs")
        assert named.can_score is True
    with pytest.raises(ConfigError, match="score_route"):
        create_llm("openai:http://127.0.0.1:9/v1,model=m,score_route=beam")


def test_a_likelihood_reranker_runs_on_a_plain_openai_spec():
    catalog = ItemCatalog([Item("1", "Heat", 1995, ("Action",)), Item("2", "Alien", 1979, ("Horror",)),
                           Item("3", "Fargo", 1996, ("Crime",)), Item("4", "Casino", 1995, ("Crime",)),
                           Item("5", "Se7en", 1995, ("Thriller",))])
    with vllm_double() as (url, server):
        llm = create_llm(f"openai:{url}")
        reranker = create_reranker("likelihood", llm, catalog)
        result = reranker.rerank(["1", "2"], ItemList(("3", "4", "5"), np.array([3.0, 2.0, 1.0])))
        assert sorted(result.order) == ["3", "4", "5"]
        assert any("prompt_logprobs" in body for path, body in server.requests if path == "/v1/completions")
