"""Reuse of recent prompts' key/value caches in the hf backend, on the real SmolLM2-135M: a prompt that begins like
a kept one reads only its new tokens and scores as if read whole; an exact repeat runs no model; the store is
bounded; and the shared-length search agrees with a plain scan."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recllm.llm.hf import HFBackend
from recllm.llm.prefix_cache import PrefixKVCache, _shared_length

HISTORY = ("The user watched, oldest first: The Matrix (1999), Alien (1979), Blade Runner (1982), Heat (1995), "
           "Fargo (1996), Toy Story (1995), GoldenEye (1995) and Twelve Monkeys (1995).")
LABELS = [" A", " B", " C", " D"]
TITLES = [" Babe (1995)", " Casino (1995)", " Se7en (1995)", ""]


@pytest.fixture(scope="module")
def plain() -> HFBackend:
    """The same model with no prefix cache: every prompt is read whole."""
    return HFBackend(prefix_cache=0)


@pytest.fixture
def cached() -> HFBackend:
    return HFBackend(prefix_cache=2)


def test_a_prompt_sharing_a_kept_beginning_reads_only_its_new_tokens(cached: HFBackend, plain: HFBackend) -> None:
    first = HISTORY + " Candidates: A. Babe, B. Casino. The best is"
    second = HISTORY + " Candidates: A. Se7en, B. Heat. The best is"
    cached.next_token_logprobs(first, LABELS)
    before = cached.usage.prompt_tokens
    scores = cached.next_token_logprobs(second, LABELS)
    shared = cached.prefix_cache.reused_tokens
    n_second = cached.count_tokens(second)
    assert shared >= cached.count_tokens(HISTORY) - 1
    assert cached.usage.prompt_tokens - before == n_second  # the usage counts the prompt, read or reused
    np.testing.assert_allclose(scores, plain.next_token_logprobs(second, LABELS), atol=1e-4, rtol=0)


def test_an_exact_repeat_gives_the_same_numbers_without_the_model(cached: HFBackend, plain: HFBackend) -> None:
    prompt = HISTORY + " Next they will watch"
    once = cached.next_token_logprobs(prompt, LABELS)
    hits = cached.prefix_cache.hits
    again = cached.next_token_logprobs(prompt, LABELS)
    assert cached.prefix_cache.hits == hits + 1
    assert np.array_equal(once, again)
    # continuation scoring reuses the kept prompt too, and the kept cache is left as it was
    for _ in range(2):
        np.testing.assert_allclose(cached.logprobs(prompt, TITLES), plain.logprobs(prompt, TITLES), atol=1e-4, rtol=0)
    np.testing.assert_allclose(cached.next_token_logprobs(prompt, LABELS), once, atol=0, rtol=0)


def test_the_store_is_bounded_and_short_beginnings_are_not_reused(cached: HFBackend) -> None:
    prompts = [f"{n}. {HISTORY} The best is" for n in range(3)]  # they differ from the second token on
    for prompt in prompts:
        cached.next_token_logprobs(prompt, LABELS)
    assert len(cached.prefix_cache) == 2
    assert cached.prefix_cache.reused_tokens == 0  # a shared start of a few tokens is read again
    assert cached.prefix_cache.misses == 3


def test_no_cache_keeps_nothing(plain: HFBackend) -> None:
    plain.next_token_logprobs(HISTORY, LABELS)
    assert len(plain.prefix_cache) == 0
    assert plain.prefix_cache.hits == 0


def test_a_negative_size_is_refused() -> None:
    with pytest.raises(ValueError, match="entries must be >= 0"):
        PrefixKVCache(-1)


@given(st.lists(st.integers(0, 3), max_size=12), st.lists(st.integers(0, 3), max_size=12))
def test_shared_length_is_the_longest_common_beginning(a: list[int], b: list[int]) -> None:
    expected = 0
    while expected < min(len(a), len(b)) and a[expected] == b[expected]:
        expected += 1
    assert _shared_length(tuple(a), tuple(b)) == expected


def test_a_sliding_window_cache_past_its_window_serves_exact_repeats_only() -> None:
    """Gemma-3's local-attention layers keep only their last window of tokens: such a cache cannot be cut back to
    a shorter prefix (transformers raises), so it is not offered for partial reuse, only for the same prompt."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=8, sliding_window=4,
                              layer_types=["sliding_attention", "full_attention"])
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config).eval()
    store = PrefixKVCache(2, min_shared=2, min_fraction=0.1)
    short, long = list(range(1, 4)), list(range(1, 21))
    for ids in (short, long):
        with torch.no_grad():
            out = model(torch.tensor([ids]), use_cache=True)
        store.store(ids, out.past_key_values, out.logits[0, -1])
    assert store.lookup(long).shared == len(long)  # the exact repeat
    reuse = store.lookup([*long[:15], 40, 41])  # shares 15 tokens with the long prompt, 3 with the short one
    assert reuse.shared == len(short)  # only the short prompt, still inside its window, can be cut back
    assert reuse.cache.get_seq_length() == len(short)
