"""The OpenAI-compatible app over the real SmolLM2-135M (in-process ASGI client), and its error handling and
request serialisation over real HTTP (uvicorn in a thread, with stand-in models that need no weights)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient

from fakes import ScriptedLLM
from recllm.llm import LLM, Completion, GenerationRequest
from recllm.llm.hf import HFBackend
from recllm.llm.server import create_app

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(llm: HFBackend) -> Iterator[TestClient]:
    with TestClient(create_app(llm), raise_server_exceptions=False) as test_client:
        yield test_client


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"]
    return dict(body["error"])


def test_health_and_models_advertise_the_model_and_its_capabilities(client: TestClient, llm: HFBackend) -> None:
    assert client.get("/health").json() == {"status": "ok", "model": llm.model_name, "backend": "hf"}
    [card] = client.get("/v1/models").json()["data"]
    assert card["id"] == llm.model_name and card["object"] == "model"
    info = card["recllm"]
    assert info["can_score"] is True and info["can_schema"] is True and info["echo_logprobs"] is True
    assert info["context_length"] == llm.context_length
    assert {"logprobs", "next_token_logprobs", "tokenize", "render_chat"} <= set(info["endpoints"])
    assert client.get("/v1/recllm/capabilities").json() == info


@pytest.mark.parametrize(("path", "body", "expected"), [
    ("/v1/chat/completions", b'{"messages": [', "not valid JSON"),
    ("/v1/completions", b"{'prompt': 'single quotes'}", "not valid JSON"),
    ("/v1/chat/completions", b"", "needs a JSON object"),
    ("/v1/chat/completions", b"[1, 2]", "valid dictionary"),
    ("/v1/chat/completions", b'{"model": "x"}', "messages: Field required"),
    ("/v1/chat/completions", b'{"messages": [{"role": "robot", "content": "hi"}]}', "messages.0.role"),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "hi"}], "temperature": -1}',
     "temperature: Input should be greater than or equal to 0"),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}', "max_tokens"),
    ("/v1/completions", b'{"prompt": "hi", "logprobs": 99}', "logprobs: Input should be less than or equal to 20"),
    ("/v1/completions", b'{"prompt": [1, 2, 3]}', "prompt"),
    ("/v1/recllm/logprobs", b'{"prompt": "The capital", "continuations": [" x"], "contination": 1}',
     "contination: Extra inputs are not permitted"),
    ("/v1/recllm/next_token_logprobs", b'{"prompt": "The capital"}', "tokens: Field required"),
    ("/v1/recllm/logprobs_many", b'{"jobs": [{"prompt": "The capital", "continuation": [" x"]}]}',
     "jobs.0.continuations: Field required"),
])
def test_malformed_or_invalid_requests_are_400_with_a_message(client: TestClient, path: str, body: bytes,
                                                              expected: str) -> None:
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = _error(response)
    assert error["type"] == "invalid_request_error"
    assert expected in error["message"]


def test_a_json_schema_response_format_is_followed(client: TestClient) -> None:
    answer = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"],
              "additionalProperties": False}
    schema = {"type": "json_schema", "json_schema": {"name": "answer", "schema": answer}}
    response = client.post("/v1/chat/completions", json={"messages": QUESTION, "response_format": schema,
                                                         "max_tokens": 24})
    assert response.status_code == 200
    assert json.loads(response.json()["choices"][0]["message"]["content"]) in ({"answer": "yes"}, {"answer": "no"})


def test_a_json_schema_is_refused_for_a_model_that_cannot_follow_one() -> None:
    with TestClient(create_app(ScriptedLLM(["{}"])), raise_server_exceptions=False) as plain:
        schema = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}
        response = plain.post("/v1/chat/completions", json={"messages": QUESTION, "response_format": schema})
    assert response.status_code == 400
    assert _error(response)["type"] == "capability_error"
    assert "JSON schema" in _error(response)["message"]


def test_requests_the_model_cannot_do_are_400_naming_the_reason(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", json={"messages": QUESTION, "stream": True})
    assert response.status_code == 400 and "stream" in _error(response)["message"]
    response = client.post("/v1/recllm/next_token_logprobs",
                           json={"prompt": "The capital of France is", "tokens": [" Paris", " Banana"]})
    assert response.status_code == 400 and "' Banana' is 2 tokens" in _error(response)["message"]
    response = client.post("/v1/recllm/logprobs", json={"prompt": "   ", "continuations": [" Paris"]})
    assert response.status_code == 400 and "prompt is empty" in _error(response)["message"]
    response = client.get("/v1/no/such/endpoint")
    assert response.status_code == 404 and _error(response)["message"] == "Not Found"


def test_chat_completion_is_the_models_greedy_answer_with_usage(client: TestClient, llm: HFBackend) -> None:
    body = {"model": "any-name", "messages": QUESTION, "max_tokens": 8, "temperature": 0, "user": "ignored-field"}
    answer = client.post("/v1/chat/completions", json=body).json()
    [local] = llm.generate([GenerationRequest.chat(QUESTION, max_new_tokens=8)])
    assert answer["object"] == "chat.completion" and answer["model"] == llm.model_name
    [choice] = answer["choices"]
    assert choice["message"] == {"role": "assistant", "content": local.text}
    assert "Paris" in choice["message"]["content"]
    assert choice["finish_reason"] == local.finish_reason
    assert answer["usage"] == {"prompt_tokens": local.prompt_tokens, "completion_tokens": local.completion_tokens,
                               "total_tokens": local.prompt_tokens + local.completion_tokens}


def test_completions_take_a_list_of_prompts_and_n(client: TestClient) -> None:
    body = {"prompt": ["One, two, three, four,", "Monday, Tuesday,"], "max_tokens": 4, "temperature": 0, "n": 2}
    choices = client.post("/v1/completions", json=body).json()["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2, 3]
    assert choices[0]["text"] == choices[1]["text"] and "five" in choices[0]["text"]
    assert choices[2]["text"] == choices[3]["text"] and "Wednesday" in choices[2]["text"]


def test_echo_logprobs_give_per_token_numbers_that_sum_to_the_models_score(client: TestClient,
                                                                           llm: HFBackend) -> None:
    prompt, continuation = "The capital of France is", " Paris, the city of light"
    body = {"prompt": prompt + continuation, "max_tokens": 0, "echo": True, "logprobs": 3}
    [choice] = client.post("/v1/completions", json=body).json()["choices"]
    assert choice["text"] == prompt + continuation
    scores = choice["logprobs"]
    assert "".join(scores["tokens"]) == prompt + continuation
    assert scores["token_logprobs"][0] is None and scores["top_logprobs"][0] is None
    assert scores["text_offset"] == [len("".join(scores["tokens"][:j])) for j in range(len(scores["tokens"]))]
    inside = [v for v, o in zip(scores["token_logprobs"], scores["text_offset"], strict=True) if o >= len(prompt)]
    np.testing.assert_allclose(sum(inside), llm.logprobs(prompt, [continuation])[0], atol=1e-4)
    for value, top in zip(scores["token_logprobs"][1:], scores["top_logprobs"][1:], strict=True):
        assert len(top) == 3 and max(top.values()) >= value - 1e-6


def test_logprobs_without_echo_cover_only_the_generated_tokens(client: TestClient) -> None:
    body = {"prompt": "One, two, three,", "max_tokens": 4, "temperature": 0, "logprobs": 0}
    [choice] = client.post("/v1/completions", json=body).json()["choices"]
    scores = choice["logprobs"]
    assert "".join(scores["tokens"]) == choice["text"] and scores["text_offset"][0] == 0
    assert all(v is not None and v <= 0 for v in scores["token_logprobs"])
    assert scores["top_logprobs"] is None


def test_extension_endpoints_return_the_models_own_numbers(client: TestClient, llm: HFBackend) -> None:
    prompt, titles = "The next movie this user will watch is", [" Toy Story (1995)", " Fargo (1996)", ""]
    answer = client.post("/v1/recllm/logprobs", json={"prompt": prompt, "continuations": titles}).json()
    np.testing.assert_allclose(answer["logprobs"], llm.logprobs(prompt, titles), atol=1e-9, rtol=0)
    assert answer["usage"]["prompt_tokens"] == llm.count_tokens(prompt) and answer["usage"]["scored_tokens"] > 4
    labels = [" A", " B", " C"]
    answer = client.post("/v1/recllm/next_token_logprobs", json={"prompt": prompt, "tokens": labels}).json()
    np.testing.assert_allclose(answer["logprobs"], llm.next_token_logprobs(prompt, labels), atol=1e-9, rtol=0)
    texts = ["The capital of France is", "", "Fargo"]
    counts = client.post("/v1/recllm/tokenize", json={"texts": texts}).json()["token_counts"]
    assert counts == [llm.count_tokens(t) for t in texts] == [5, 0, counts[2]]
    rendered = client.post("/v1/recllm/render_chat", json={"messages": QUESTION}).json()["prompt"]
    assert rendered == llm.render_chat(QUESTION)
    jobs = [(prompt, titles), ("The capital of France is", [" Paris"]), ("Nothing to score", [])]
    answer = client.post("/v1/recllm/logprobs_many",
                         json={"jobs": [{"prompt": p, "continuations": c} for p, c in jobs]}).json()
    assert answer["object"] == "recllm.logprobs_many" and answer["usage"]["scored_tokens"] > 4
    for got, expected in zip(answer["logprobs"], llm.logprobs_many(jobs), strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-9, rtol=0)
    capabilities = client.get("/v1/recllm/capabilities").json()
    assert "logprobs_many" in capabilities["endpoints"]
    assert capabilities["scores_jointly"] is llm.scores_prompts_jointly


# ---- over real HTTP, with stand-in models -----------------------------------------------------------------
class _SlowModel(LLM):
    """Echoes the prompt after a pause, and records how many calls ran at once."""

    backend = "stand-in"

    def __init__(self) -> None:
        super().__init__("slow")
        self.active = 0
        self.most_active = 0
        self._count = threading.Lock()

    def _generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        with self._count:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        time.sleep(0.05)
        with self._count:
            self.active -= 1
        return [Completion(text=f"echo:{r.prompt}", finish_reason="stop", prompt_tokens=1, completion_tokens=1)
                for r in requests]


class _BrokenModel(LLM):
    backend = "stand-in"

    def __init__(self) -> None:
        super().__init__("broken")

    def _generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        raise RuntimeError("the GPU caught fire")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _serving(model: LLM) -> Iterator[str]:
    """``model`` behind uvicorn on a free 127.0.0.1 port, in a thread; yields the base URL."""
    server = uvicorn.Server(uvicorn.Config(create_app(model), host="127.0.0.1", port=_free_port(),
                                           log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_concurrent_requests_are_served_one_at_a_time() -> None:
    model = _SlowModel()
    with _serving(model) as url, httpx.Client(base_url=url, timeout=10) as http:
        def ask(i: int) -> str:
            response = http.post("/v1/completions", json={"prompt": f"p{i}", "max_tokens": 2})
            assert response.status_code == 200
            return str(response.json()["choices"][0]["text"])

        with ThreadPoolExecutor(max_workers=6) as pool:
            texts = list(pool.map(ask, range(6)))
    assert texts == [f"echo:p{i}" for i in range(6)]
    assert model.most_active == 1


def test_a_failing_model_is_a_500_with_a_one_line_message_not_a_traceback() -> None:
    with _serving(_BrokenModel()) as url:
        response = httpx.post(f"{url}/v1/chat/completions", json={"messages": QUESTION}, timeout=10)
    assert response.status_code == 500
    error = _error(response)
    assert error["type"] == "server_error"
    assert "RuntimeError: the GPU caught fire" in error["message"] and "Traceback" not in response.text
