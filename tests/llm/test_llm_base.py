"""The request types and the factory validate input without loading any model."""

from __future__ import annotations

import pytest

from recllm.errors import ConfigError
from recllm.llm import CapabilityError, GenerationRequest, LLMError, Usage, create_llm, resolve_llm
from recllm.llm.cache import cache_key


def test_request_needs_exactly_one_of_messages_or_prompt() -> None:
    with pytest.raises(LLMError, match="exactly one"):
        GenerationRequest()
    with pytest.raises(LLMError, match="exactly one"):
        GenerationRequest(prompt="hi", messages=({"role": "user", "content": "hi"},))


@pytest.mark.parametrize(("params", "message"), [
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"temperature": -0.1}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"stop": ("",)}, "stop"),
])
def test_request_rejects_bad_parameters(params: dict, message: str) -> None:
    with pytest.raises(LLMError, match=message):
        GenerationRequest.text("hello", **params)


def test_request_rejects_bad_messages() -> None:
    with pytest.raises(LLMError, match=r"messages\[0\]\.role"):
        GenerationRequest.chat([{"role": "robot", "content": "hi"}])
    with pytest.raises(LLMError, match=r"messages\[1\]"):
        GenerationRequest.chat([{"role": "user", "content": "hi"}, {"role": "user"}])


def test_request_normalises_stop_and_reports_determinism() -> None:
    request = GenerationRequest.text("hello", stop="\n")
    assert request.stop == ("\n",)
    assert request.deterministic
    assert not GenerationRequest.text("hello", temperature=0.7).deterministic
    assert GenerationRequest.text("hello", temperature=0.7, seed=3).deterministic


def test_cache_key_depends_on_every_part() -> None:
    payload = GenerationRequest.text("hello").to_payload()
    key = cache_key("hf", "m", "generate", payload)
    assert key == cache_key("hf", "m", "generate", dict(payload))
    assert key != cache_key("hf", "other", "generate", payload)
    assert key != cache_key("openai", "m", "generate", payload)
    assert key != cache_key("hf", "m", "generate", GenerationRequest.text("hello", max_new_tokens=5).to_payload())


def test_usage_tokens_per_second() -> None:
    usage = Usage()
    assert usage.tokens_per_second == 0.0
    usage.record_generation(requests=2, prompt_tokens=10, generated_tokens=30, seconds=2.0)
    assert usage.tokens_per_second == pytest.approx(15.0)
    assert usage.as_dict()["generate_calls"] == 2
    usage.reset()
    assert usage.generated_tokens == 0


def test_unknown_backend_and_missing_folder_are_errors() -> None:
    with pytest.raises(ConfigError, match="unknown LLM backend 'nope'"):
        create_llm("nope")
    with pytest.raises(ConfigError, match="neither an existing folder"):
        resolve_llm("./no/such/model/folder")


def test_hub_id_resolves_without_loading() -> None:
    resolved = resolve_llm("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert resolved.source == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert not resolved.local


def test_capability_error_is_an_llm_error() -> None:
    assert issubclass(CapabilityError, LLMError)
