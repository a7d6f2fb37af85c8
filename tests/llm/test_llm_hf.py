"""The hf backend on the real SmolLM2-135M: generation, continuation scoring with and without prefix reuse,
next-token label scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recllm.llm import GenerationRequest, LLMError
from recllm.llm.hf import HFBackend

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
TITLES = [" Toy Story (1995)", " GoldenEye (1995)", " Babe (1995)", " Twelve Monkeys (1995)",
          " Usual Suspects, The (1995)", " Mr. Holland's Opus (1995)", " Fargo", ""]


def test_chat_generation_returns_text_and_counts_usage(llm: HFBackend) -> None:
    before = llm.usage.generated_tokens
    [completion] = llm.generate([GenerationRequest.chat(QUESTION, max_new_tokens=12)])
    assert completion.text.strip()
    assert "Paris" in completion.text
    assert completion.prompt_tokens > 10
    assert 1 <= completion.completion_tokens <= 12
    assert completion.finish_reason in ("stop", "length")
    assert llm.usage.generated_tokens - before == completion.completion_tokens
    assert llm.usage.tokens_per_second > 0


def test_greedy_generation_is_deterministic_and_batching_keeps_order(llm: HFBackend) -> None:
    requests = [GenerationRequest.chat(QUESTION, max_new_tokens=8),
                GenerationRequest.text("One, two, three, four,", max_new_tokens=8)]
    first = llm.generate(requests)
    again = llm.generate(requests)
    assert [c.text for c in first] == [c.text for c in again]
    alone = llm.generate(requests[1:])
    assert alone[0].text == first[1].text
    assert "five" in first[1].text.lower()


def test_seeded_sampling_is_reproducible(llm: HFBackend) -> None:
    request = GenerationRequest.text("Once upon a time", max_new_tokens=8, temperature=1.0, seed=7)
    assert llm.generate([request])[0].text == llm.generate([request])[0].text


def test_stop_strings_cut_the_output(llm: HFBackend) -> None:
    prompt = "Monday, Tuesday, Wednesday,"
    [full] = llm.generate([GenerationRequest.text(prompt, max_new_tokens=10)])
    words = full.text.split()
    assert len(words) >= 3
    stop = words[2]  # a string the model is known to produce; it must end the output just before it
    [cut] = llm.generate([GenerationRequest.text(prompt, max_new_tokens=10, stop=(stop, "never-seen"))])
    assert cut.text == full.text[:full.text.index(stop)]
    assert stop not in cut.text
    assert cut.finish_reason == "stop"
    assert cut.completion_tokens < full.completion_tokens


def test_hf_follows_json_schemas_and_grammars(llm: HFBackend) -> None:
    assert llm.can_schema and llm.can_grammar  # details in test_constrained.py
    schema = {"type": "object", "properties": {"greeting": {"enum": ["hello", "hi"]}}, "required": ["greeting"],
              "additionalProperties": False}
    out = llm.generate([GenerationRequest.text("hi", max_new_tokens=32, json_schema=schema)])[0]
    assert json.loads(out.text) in ({"greeting": "hello"}, {"greeting": "hi"})


def test_logprobs_prefer_the_natural_continuation(llm: HFBackend) -> None:
    scores = llm.logprobs("The capital of France is", [" Paris", " Banana"])
    assert scores.shape == (2,) and scores.dtype == np.float64
    assert np.isfinite(scores).all() and (scores <= 0).all()
    assert scores[0] > scores[1] + 5


def test_prefix_reuse_gives_the_same_numbers_as_scoring_from_scratch(llm: HFBackend) -> None:
    prompt = ("A user watched Star Wars (1977), Fargo (1996), Contact (1997) and Return of the Jedi (1983). "
              "The next movie this user will watch is")
    reused = llm.logprobs(prompt, TITLES)
    scratch = llm.logprobs(prompt, TITLES, reuse_prefix=False)
    assert reused.shape == (len(TITLES),)
    assert np.isfinite(reused).all()
    assert reused[-1] == 0.0  # empty continuation
    np.testing.assert_allclose(reused, scratch, atol=1e-4, rtol=0)
    batch_size = llm.score_batch_size
    try:  # several batches, each with its own copy of the prompt cache
        llm.score_batch_size = 3
        np.testing.assert_allclose(llm.logprobs(prompt, TITLES), reused, atol=1e-4, rtol=0)
    finally:
        llm.score_batch_size = batch_size


def test_trailing_prompt_space_moves_into_the_continuation(llm: HFBackend) -> None:
    with_space = llm.logprobs("The capital of France is ", ["Paris"])
    without = llm.logprobs("The capital of France is", [" Paris"])
    np.testing.assert_allclose(with_space, without, atol=1e-6)


def test_single_token_continuation_matches_next_token_logprob(llm: HFBackend) -> None:
    prompt = "The capital of France is"
    np.testing.assert_allclose(llm.logprobs(prompt, [" Paris"]), llm.next_token_logprobs(prompt, [" Paris"]),
                               atol=1e-4)


@pytest.mark.parametrize(("prompt", "labels", "answer"), [
    ("Pick one: Berlin, Paris or Rome.\nThe capital of France is", [" Berlin", " Paris", " Rome"], 1),
    ("Options: A) Berlin B) Paris C) Rome\nThe capital of France is", [" A", " B", " C"], 1),
    ("Pick one word: hot, cold or loud.\nIce is very", [" hot", " cold", " loud"], 1),
])
def test_next_token_logprobs_pick_the_obvious_label(llm: HFBackend, prompt: str, labels: list[str],
                                                    answer: int) -> None:
    scores = llm.next_token_logprobs(prompt, labels)
    assert scores.shape == (len(labels),) and np.isfinite(scores).all()
    assert int(np.argmax(scores)) == answer


def test_labels_after_a_space_the_tokenizer_keeps_apart_are_scored_whole(llm: HFBackend) -> None:
    """SmolLM2 reads " 4" as " " + "4": digits after "rating:" are scored whole (space and digit), with or
    without the space at the end of the prompt, and agree with ``logprobs``."""
    prompt, digits = "Out of 5 stars, my rating of this film is:", ["1", "2", "3", "4", "5"]
    spaced = [" " + d for d in digits]
    assert all(len(llm.encode_pair(prompt, d)[1]) == 2 for d in spaced)  # the path under test
    whole = llm.logprobs(prompt, spaced)
    np.testing.assert_allclose(llm.next_token_logprobs(prompt, spaced), whole, atol=1e-4)
    np.testing.assert_allclose(llm.next_token_logprobs(prompt + " ", digits), whole, atol=1e-4)
    assert np.exp(whole).sum() > np.exp(llm.next_token_logprobs(prompt, digits)).sum()  # the space is likely


def test_multi_token_label_is_an_error(llm: HFBackend) -> None:
    with pytest.raises(LLMError, match=r"tokens\[1\] ' Banana' is 2 tokens"):
        llm.next_token_logprobs("The capital of France is", [" Paris", " Banana"])
    with pytest.raises(LLMError, match=r"tokens\[0\] ' 12' is 3 tokens"):  # " 1" + "2" and " 3" + "4" differ early
        llm.next_token_logprobs("Pick a number:", [" 12", " 34"])


def test_empty_prompt_is_an_error(llm: HFBackend) -> None:
    with pytest.raises(LLMError, match="prompt is empty"):
        llm.logprobs("   ", [" Paris"])


def test_count_tokens_is_exact(llm: HFBackend) -> None:
    assert llm.count_tokens("The capital of France is") == 5
    assert llm.context_length == 8192


def test_scoring_and_generation_emit_no_cache_deprecation_warning(llm: HFBackend, caplog) -> None:
    """transformers deprecated ``past_key_values`` (warnings and a once-per-process log line); the backend passes
    its cache under the current name, so neither a Python warning nor a transformers log record mentions it."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logger = logging.getLogger("transformers")  # does not propagate to caplog's root handler by default
    hf_logger.addHandler(caplog.handler)
    hf_logging.warning_once.cache_clear()  # a once-only log line emitted earlier in the session would hide here
    try:
        with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
            warnings.simplefilter("always")
            llm.logprobs("A user who liked Heat (1995) will next watch", [" Casino (1995)", " Babe (1995)"])
            llm.generate([GenerationRequest.text("One, two, three,", max_new_tokens=4)])
    finally:
        hf_logger.removeHandler(caplog.handler)
    messages = [str(w.message) for w in caught] + [record.getMessage() for record in caplog.records]
    flagged = [m for m in messages if "past_key_values" in m or "deprecat" in m.lower()]
    assert not flagged, flagged


def test_fast_precision_is_bfloat16_only_where_the_cpu_computes_it(monkeypatch) -> None:
    import torch

    import recllm.llm.hf as hf
    from recllm.errors import ConfigError

    cpu = torch.device("cpu")
    monkeypatch.setattr(hf, "cpu_computes_bfloat16", lambda: True)
    assert hf.pick_dtype("fast", cpu) == torch.bfloat16 and hf.pick_dtype("auto", cpu) == torch.float32
    monkeypatch.setattr(hf, "cpu_computes_bfloat16", lambda: False)
    assert hf.pick_dtype("fast", cpu) == torch.float32 and hf.pick_dtype("bfloat16", cpu) == torch.bfloat16
    with pytest.raises(ConfigError, match="auto, fast or one of"):
        hf.pick_dtype("half", cpu)
