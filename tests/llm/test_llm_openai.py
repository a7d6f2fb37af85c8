"""The openai backend against a real ``serve_llm`` process over HTTP on 127.0.0.1 (the same behaviour checks as
the hf tests, and equality with the in-process model), and its failures against a dead port and against
stand-in servers that answer garbage, wrong shapes and HTTP errors."""

from __future__ import annotations

import json
import os
import pickle
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from recllm.errors import ConfigError
from recllm.llm import CachedLLM, CapabilityError, Completion, GenerationRequest, LLMError, create_llm
from recllm.llm.hf import HFBackend
from recllm.llm.openai_backend import OpenAIBackend
from servers import free_port, running_server

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
TITLES = [" Toy Story (1995)", " GoldenEye (1995)", " Twelve Monkeys (1995)", " Fargo", ""]
LAUNCHER = ("import sys; from recllm.llm.server import serve_llm; "
            "serve_llm('hf', host='127.0.0.1', port=int(sys.argv[1]), num_threads=1, log_level='warning')")


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """``serve_llm("hf")`` in a child process on a free port; yields its base URL once /health answers."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with running_server([sys.executable, "-c", LAUNCHER, str(port)], port, env=env) as base:
        yield f"{base}/v1"


@pytest.fixture(scope="module")
def remote(server_url: str) -> Iterator[OpenAIBackend]:
    """The served model through the recllm extension (found by asking the server)."""
    with OpenAIBackend(server_url, can_score=True) as backend:
        yield backend


@pytest.fixture(scope="module")
def remote_echo(server_url: str) -> Iterator[OpenAIBackend]:
    """The served model through the plain OpenAI API only: scoring by /completions with echo and logprobs."""
    with OpenAIBackend(server_url, can_score=True, extension=False) as backend:
        yield backend


@pytest.fixture(params=["remote", "remote_echo"])
def scorer(request: pytest.FixtureRequest) -> OpenAIBackend:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


# ---- behaviour, as in the hf tests, and equal to the in-process model ------------------------------------
def test_the_served_model_is_found_and_described_exactly(remote: OpenAIBackend, remote_echo: OpenAIBackend,
                                                         llm: HFBackend) -> None:
    assert remote.model_name == llm.model_name and remote.backend == "openai"
    assert remote.capabilities() is not None and remote_echo.capabilities() is None
    assert remote.context_length == llm.context_length == 8192
    assert remote.count_tokens("The capital of France is") == 5
    assert remote_echo.count_tokens("The capital of France is") == 6  # the rough estimate, 4 characters a token
    assert remote.render_chat(QUESTION) == llm.render_chat(QUESTION)
    with pytest.raises(CapabilityError, match="cannot render a chat"):
        remote_echo.render_chat(QUESTION)


def test_chat_generation_is_greedy_deterministic_and_equals_the_local_model(remote: OpenAIBackend,
                                                                           llm: HFBackend) -> None:
    requests = [GenerationRequest.chat(QUESTION, max_new_tokens=8),
                GenerationRequest.text("One, two, three, four,", max_new_tokens=8)]
    before = remote.usage.generated_tokens
    first = remote.generate(requests)
    assert remote.usage.generated_tokens - before == sum(c.completion_tokens for c in first)
    assert [c.text for c in remote.generate(requests)] == [c.text for c in first]
    assert first == llm.generate(requests)  # text, finish reason and token counts
    assert "Paris" in first[0].text and "five" in first[1].text.lower()
    assert remote.usage.tokens_per_second > 0


def test_concurrent_generation_keeps_the_order(server_url: str, remote: OpenAIBackend) -> None:
    requests = [GenerationRequest.text(p, max_new_tokens=3) for p in ("One, two,", "Monday, Tuesday,", "A, B, C,")]
    with OpenAIBackend(server_url, concurrency=3) as parallel:
        assert parallel.generate(requests) == remote.generate(requests)


def test_seeded_sampling_is_reproducible(remote: OpenAIBackend) -> None:
    request = GenerationRequest.text("Once upon a time", max_new_tokens=6, temperature=1.0, seed=7)
    assert remote.generate([request])[0].text == remote.generate([request])[0].text


def test_stop_strings_cut_the_output(remote: OpenAIBackend) -> None:
    prompt = "Monday, Tuesday, Wednesday,"
    [full] = remote.generate([GenerationRequest.text(prompt, max_new_tokens=10)])
    words = full.text.split()
    assert len(words) >= 3
    stop = words[2]
    [cut] = remote.generate([GenerationRequest.text(prompt, max_new_tokens=10, stop=(stop, "never-seen"))])
    assert cut.text == full.text[:full.text.index(stop)]
    assert cut.finish_reason == "stop" and cut.completion_tokens < full.completion_tokens


def test_logprobs_prefer_the_natural_continuation_and_match_the_local_model(scorer: OpenAIBackend,
                                                                           llm: HFBackend) -> None:
    scores = scorer.logprobs("The capital of France is", [" Paris", " Banana"])
    assert scores.shape == (2,) and scores.dtype == np.float64 and (scores <= 0).all()
    assert scores[0] > scores[1] + 5
    np.testing.assert_allclose(scores, llm.logprobs("The capital of France is", [" Paris", " Banana"]),
                               atol=1e-3, rtol=0)
    prompt = "A user watched Star Wars (1977) and Fargo (1996). The next movie this user will watch is"
    remote_titles = scorer.logprobs(prompt, TITLES)
    assert remote_titles[-1] == 0.0
    np.testing.assert_allclose(remote_titles, llm.logprobs(prompt, TITLES), atol=1e-3, rtol=0)
    np.testing.assert_allclose(scorer.logprobs("The capital of France is ", ["Paris"]), scores[:1], atol=1e-3)


def test_next_token_logprobs_agree_with_the_local_model(scorer: OpenAIBackend, llm: HFBackend) -> None:
    prompt, labels = "Options: A) Berlin B) Paris C) Rome\nThe capital of France is", [" A", " B", " C"]
    scores = scorer.next_token_logprobs(prompt, labels)
    np.testing.assert_allclose(scores, llm.next_token_logprobs(prompt, labels), atol=1e-3, rtol=0)
    assert int(np.argmax(scores)) == 1
    with pytest.raises(LLMError, match=r"' Banana' is 2 tokens"):
        scorer.next_token_logprobs("The capital of France is", [" Paris", " Banana"])


def test_scoring_usage_is_counted(remote: OpenAIBackend) -> None:
    before = remote.usage.as_dict()
    remote.logprobs("The capital of France is", [" Paris", " Rome"])
    after = remote.usage.as_dict()
    assert after["score_calls"] == before["score_calls"] + 1
    assert after["scored_tokens"] - before["scored_tokens"] == 2
    assert after["prompt_tokens"] - before["prompt_tokens"] == 5


def test_missing_capabilities_are_capability_errors(server_url: str, remote: OpenAIBackend) -> None:
    with OpenAIBackend(server_url, model=remote.model_name) as asked:
        assert asked.can_score and asked.score_route() == "extension"  # found out by asking recllm's server
    with OpenAIBackend(server_url, model=remote.model_name, can_score=False) as plain:
        assert not plain.can_score and not plain.can_schema
        with pytest.raises(CapabilityError, match="does not offer logprobs"):
            plain.logprobs("The capital of France is", [" Paris"])
        with pytest.raises(CapabilityError, match="JSON schema"):
            plain.generate([GenerationRequest.chat(QUESTION, json_schema={"type": "object"})])
        with pytest.raises(CapabilityError, match="grammar"):
            plain.generate([GenerationRequest.chat(QUESTION, grammar='start: "yes" | "no"')])
    # recllm's server follows JSON schemas (the hf backend decodes under them), so a client that says so gets JSON
    with OpenAIBackend(server_url, model=remote.model_name, can_schema=True, max_retries=0) as claims_schema:
        schema = {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}}, "required": ["city"],
                  "additionalProperties": False}
        answer = claims_schema.generate([GenerationRequest.chat(QUESTION, max_new_tokens=32, json_schema=schema)])[0]
    assert json.loads(answer.text) in ({"city": "Paris"}, {"city": "Rome"})


def test_factory_builds_the_backend_from_a_spec(server_url: str, llm: HFBackend, tmp_path: Path) -> None:
    backend = create_llm(f"openai:{server_url}", can_score=True, cache=tmp_path / "cache.sqlite")
    assert isinstance(backend, CachedLLM) and isinstance(backend.inner, OpenAIBackend)
    assert backend.model_name == llm.model_name
    first = backend.logprobs("The capital of France is", [" Paris"])
    assert np.array_equal(backend.logprobs("The capital of France is", [" Paris"]), first)
    assert backend.stats() == {"hits": 1, "misses": 1}
    with pytest.raises(ConfigError, match="needs the server's base URL"):
        create_llm("openai")
    with pytest.raises(ConfigError, match="must start with http"):
        create_llm("openai:ftp://example.org", model="m")


def test_the_backend_survives_pickling(remote: OpenAIBackend) -> None:
    copy = pickle.loads(pickle.dumps(remote))
    np.testing.assert_allclose(copy.logprobs("The capital of France is", [" Paris"]),
                               remote.logprobs("The capital of France is", [" Paris"]), atol=1e-9)
    copy.close()


# ---- failures -------------------------------------------------------------------------------------------
def test_a_dead_port_is_a_quick_clear_error_after_bounded_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    start = time.monotonic()
    backend = OpenAIBackend(url, model="m", max_retries=2, backoff=0.05)
    with pytest.raises(LLMError, match=rf"{url}/chat/completions is unreachable .*3 attempts"):
        backend.generate([GenerationRequest.chat(QUESTION)])
    with pytest.raises(LLMError, match=rf"{url}/models is unreachable"):
        OpenAIBackend(url, max_retries=1, backoff=0.05)  # no model named: the server is asked, and is not there
    assert time.monotonic() - start < 5


GOOD_CHAT = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 7, "completion_tokens": 1}}
GOOD_TEXT = {"choices": [{"index": 0, "text": " Paris", "finish_reason": "length"}],
             "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
GOOD_CHAT_COMPLETION = Completion(text="Paris", finish_reason="stop", prompt_tokens=7, completion_tokens=1)
# vLLM's answer shape for echo=True, logprobs=1, max_tokens=1 (without text_offset: offsets come from the tokens)
ECHO = {"choices": [{"index": 0, "text": "The capital is Paris!", "finish_reason": "length",
                     "logprobs": {"tokens": ["The", " capital", " is", " Paris", "!"],
                                  "token_logprobs": [None, -1.0, -2.0, -0.5, -3.0]}}]}


class _StandIn(BaseHTTPRequestHandler):
    """Answers by the first path segment: html, shape, fail500, flaky, bad400, slow, record, noecho, echo."""

    hits: ClassVar[dict[str, int]] = {}
    seen: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass

    def _answer(self, status: int, body: str | bytes | dict[str, Any], kind: str = "application/json") -> None:
        raw = json.dumps(body).encode() if isinstance(body, dict) else body.encode() if isinstance(body, str) else body
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass

    def do_GET(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        mode = self.path.strip("/").split("/")[0]
        self.hits[mode] = self.hits.get(mode, 0) + 1
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.path.endswith("/recllm/capabilities"):
            self._answer(404, {"error": {"message": "not found"}})
        elif mode == "html":
            self._answer(200, "<html><body>Welcome to nginx!</body></html>", "text/html")
        elif mode == "shape":
            self._answer(200, {"result": "Paris", "status": "ok"})
        elif mode == "fail500":
            self._answer(500, "upstream model crashed: CUDA out of memory", "text/plain")
        elif mode == "flaky":
            self._answer(503, {"error": "loading"}) if self.hits[mode] == 1 else self._answer(200, GOOD_CHAT)
        elif mode == "bad400":
            self._answer(400, {"error": {"message": "model 'm' does not exist", "type": "invalid_request_error"}})
        elif mode == "slow":
            time.sleep(1.0)
            self._answer(200, GOOD_CHAT)
        elif mode == "noecho":
            self._answer(200, {"choices": [{"index": 0, "text": "x", "logprobs": None, "finish_reason": "length"}]})
        elif mode == "echo":
            self._answer(200, ECHO)
        elif self.path.endswith("/v1/completions"):
            self._answer(200, GOOD_TEXT)
        else:
            self._answer(200, GOOD_CHAT)


@pytest.fixture(scope="module")
def stand_in() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _backend(base: str, **options: Any) -> OpenAIBackend:
    return OpenAIBackend(base, model="m", max_retries=2, backoff=0.01, **options)


def test_a_server_answering_non_json_is_a_clear_error(stand_in: str) -> None:
    with pytest.raises(LLMError, match=r"/html/v1/chat/completions answered HTTP 200 with a body that is not JSON "
                                       r"\(text/html\): <html><body>Welcome to nginx!"):
        _backend(f"{stand_in}/html/v1").generate([GenerationRequest.chat(QUESTION)])


def test_a_server_answering_json_of_the_wrong_shape_is_a_clear_error(stand_in: str) -> None:
    backend = _backend(f"{stand_in}/shape/v1", can_score=True)
    with pytest.raises(LLMError, match=r"/shape/v1/chat/completions answered JSON of an unexpected shape "
                                       r"\(no 'choices'\): \{\"result\": \"Paris\""):
        backend.generate([GenerationRequest.chat(QUESTION)])
    with pytest.raises(LLMError, match=r"/shape/v1/models answered JSON of an unexpected shape \(no 'data'\)"):
        OpenAIBackend(f"{stand_in}/shape/v1")
    with pytest.raises(LLMError, match=r"/shape/v1/completions answered JSON of an unexpected shape"):
        backend.logprobs("The capital is", [" Paris"])


def test_http_500_is_retried_then_reported_with_status_and_body(stand_in: str) -> None:
    before = _StandIn.hits.get("fail500", 0)
    with pytest.raises(LLMError, match=r"fail500/v1/completions answered HTTP 500: upstream model crashed: CUDA "
                                       r"out of memory \(3 attempts"):
        _backend(f"{stand_in}/fail500/v1").generate([GenerationRequest.text("hi")])
    assert _StandIn.hits["fail500"] - before == 3


def test_a_transient_503_is_retried_and_then_succeeds(stand_in: str) -> None:
    [completion] = _backend(f"{stand_in}/flaky/v1").generate([GenerationRequest.chat(QUESTION)])
    assert completion.text == "Paris" and completion.prompt_tokens == 7
    assert _StandIn.hits["flaky"] == 2


def test_a_client_error_is_reported_at_once_without_retries(stand_in: str) -> None:
    with pytest.raises(LLMError, match=r"bad400/v1/chat/completions answered HTTP 400: .*model 'm' does not exist"):
        _backend(f"{stand_in}/bad400/v1").generate([GenerationRequest.chat(QUESTION)])
    assert _StandIn.hits["bad400"] == 1


def test_a_slow_server_times_out_after_bounded_retries(stand_in: str) -> None:
    start = time.monotonic()
    with pytest.raises(LLMError, match=r"slow/v1/chat/completions timed out after 0.2 s .*2 attempts"):
        OpenAIBackend(f"{stand_in}/slow/v1", model="m", timeout=0.2, max_retries=1, backoff=0.01).generate(
            [GenerationRequest.chat(QUESTION)])
    assert time.monotonic() - start < 2


def test_request_fields_api_key_and_json_schema_are_sent(stand_in: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    schema = {"title": "answer", "type": "object", "properties": {"city": {"type": "string"}}}
    backend = _backend(f"{stand_in}/record/v1", can_schema=True)
    request = GenerationRequest.chat(QUESTION, max_new_tokens=5, stop=("\n",), seed=3, json_schema=schema)
    [completion] = backend.generate([request])
    assert completion == GOOD_CHAT_COMPLETION
    sent = _StandIn.seen[-1]
    assert sent["path"] == "/record/v1/chat/completions"
    assert sent["headers"]["Authorization"] == "Bearer sk-test-123"
    assert sent["body"] == {"model": "m", "messages": QUESTION, "max_tokens": 5, "temperature": 0.0, "top_p": 1.0,
                            "n": 1, "stop": ["\n"], "seed": 3,
                            "response_format": {"type": "json_schema",
                                                "json_schema": {"name": "answer", "schema": schema}}}
    [text] = backend.generate([GenerationRequest.text("The capital is", max_new_tokens=2)])
    assert text == Completion(text=" Paris", finish_reason="length", prompt_tokens=3, completion_tokens=1)
    assert _StandIn.seen[-1]["path"] == "/record/v1/completions"
    assert _StandIn.seen[-1]["body"]["prompt"] == "The capital is"
    _backend(f"{stand_in}/record/v1", chat_only=True).generate([GenerationRequest.text("Paris is")])
    assert _StandIn.seen[-1]["body"]["messages"] == [{"role": "user", "content": "Paris is"}]


def test_echo_scoring_reads_vllm_style_answers(stand_in: str) -> None:
    backend = _backend(f"{stand_in}/echo/v1", can_score=True)
    assert backend.logprobs("The capital is", [" Paris"])[0] == -0.5  # the generated "!" is not counted
    sent = _StandIn.seen[-1]["body"]
    assert sent["echo"] is True and sent["logprobs"] == 1 and sent["max_tokens"] == 1
    assert sent["prompt"] == ["The capital is Paris"]
    with pytest.raises(CapabilityError, match="does not score by extension or echo or prompt_logprobs"):
        _backend(f"{stand_in}/noecho/v1", can_score=True).logprobs("The capital is", [" Paris"])
    with pytest.raises(CapabilityError, match="does not score by echo"):
        _backend(f"{stand_in}/noecho/v1", score_route="echo").logprobs("The capital is", [" Paris"])
