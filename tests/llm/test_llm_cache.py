"""The SQLite response cache: hits return identical values, other parameters miss, data survives reopening."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import torch

from recllm.llm import CachedLLM, GenerationRequest, ResponseCache
from recllm.llm.hf import HFBackend


def test_generate_hits_after_first_call(llm: HFBackend, tmp_path: Path) -> None:
    cached = CachedLLM(llm, tmp_path / "llm.sqlite")
    request = GenerationRequest.text("One, two, three,", max_new_tokens=4)
    first = cached.generate([request])
    calls = llm.usage.generate_calls
    second = cached.generate([request])
    assert second == first
    assert cached.stats() == {"hits": 1, "misses": 1}
    assert llm.usage.generate_calls == calls  # answered without the model
    cached.generate([GenerationRequest.text("One, two, three,", max_new_tokens=5)])
    assert cached.stats() == {"hits": 1, "misses": 2}


def test_unseeded_sampling_is_never_cached(llm: HFBackend, tmp_path: Path) -> None:
    cached = CachedLLM(llm, tmp_path / "llm.sqlite")
    request = GenerationRequest.text("Hello", max_new_tokens=2, temperature=1.0)
    cached.generate([request])
    cached.generate([request])
    assert cached.stats() == {"hits": 0, "misses": 2}
    assert len(cached.cache) == 0


def test_scores_are_cached_exactly_and_survive_reopening(llm: HFBackend, tmp_path: Path) -> None:
    path = tmp_path / "cache" / "llm.sqlite"
    cached = CachedLLM(llm, path)
    prompt = "The capital of France is"
    scores = cached.logprobs(prompt, [" Paris", " Banana"])
    labels = cached.next_token_logprobs(prompt, [" Paris", " Rome"])
    assert cached.stats() == {"hits": 0, "misses": 2}
    cached.logprobs(prompt, [" Paris", " Rome"])  # other continuations: a miss
    assert cached.stats()["misses"] == 3
    cached.cache.close()

    reopened = CachedLLM(llm, ResponseCache(path))
    np.testing.assert_array_equal(reopened.logprobs(prompt, [" Paris", " Banana"]), scores)
    np.testing.assert_array_equal(reopened.next_token_logprobs(prompt, [" Paris", " Rome"]), labels)
    assert reopened.stats() == {"hits": 2, "misses": 0}
    assert reopened.can_score and reopened.model_name == llm.model_name and reopened.backend == "hf"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_several_prompts_share_the_cache_of_single_calls(llm: HFBackend, tmp_path: Path) -> None:
    cached = CachedLLM(llm, tmp_path / "llm.sqlite")
    alone = cached.logprobs("The capital of France is", [" Paris", " Banana"])
    calls = llm.usage.score_calls
    jobs = [("The capital of France is", [" Paris", " Banana"]), ("The capital of Italy is", [" Rome"])]
    together = cached.logprobs_many(jobs)
    assert cached.stats() == {"hits": 1, "misses": 2}  # the first job was cached by the single call
    assert llm.usage.score_calls == calls + 1  # only the second job reached the model
    np.testing.assert_array_equal(together[0], alone)
    again = cached.logprobs_many(jobs)
    assert cached.stats() == {"hits": 3, "misses": 2} and llm.usage.score_calls == calls + 1
    for a, b in zip(again, together, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(cached.logprobs("The capital of Italy is", [" Rome"]), together[1])


def test_cache_store_round_trips_json(tmp_path: Path) -> None:
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        cache.put_many([("k1", "hf", "m", "logprobs", [-0.1, -2.5]), ("k2", "hf", "m", "generate", {"text": "x"})])
        assert cache.get_many(["k1", "k2", "k3"]) == {"k1": [-0.1, -2.5], "k2": {"text": "x"}}
        assert cache.get("k3") is None
        assert len(cache) == 2


def test_another_precision_of_the_same_model_never_reads_its_cached_scores(llm: HFBackend, tmp_path: Path) -> None:
    """float32 and bfloat16 runs of one model give different numbers, so they key the cache apart (a float32
    score served to a bfloat16 service, or back, would be a wrong answer that looks right)."""
    half = HFBackend(dtype="bfloat16", num_threads=torch.get_num_threads())
    assert llm.cache_identity == llm.model_name == half.model_name != half.cache_identity
    path = tmp_path / "llm.sqlite"
    full_cached, half_cached = CachedLLM(llm, path), CachedLLM(half, path)
    prompt = "The capital of France is"
    full = full_cached.logprobs(prompt, [" Paris", " Banana"])
    halved = half_cached.logprobs(prompt, [" Paris", " Banana"])
    assert half_cached.stats() == {"hits": 0, "misses": 1}  # not served the float32 numbers
    np.testing.assert_array_equal(halved, half.logprobs(prompt, [" Paris", " Banana"]))
    assert not np.array_equal(full, halved)
    assert CachedLLM(half, path).logprobs(prompt, [" Paris", " Banana"]).tolist() == halved.tolist()
