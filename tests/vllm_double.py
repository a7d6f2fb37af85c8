"""A test double of an OpenAI-compatible server in vLLM's dialect, written from vLLM's documented request and
response shapes: ``GET /v1/models``; ``POST /v1/completions`` with the extra parameter ``prompt_logprobs``
(per prompt token ``{token_id: {"logprob", "rank", "decoded_token"}}``, None for the first token) and, when
``echo`` is on, ``echo`` with ``logprobs`` (``tokens``, ``token_logprobs``, ``text_offset``);
``POST /v1/chat/completions``. Its "model" is a toy: tokens are words, digits and marks with their leading
spaces, and each token's log-probability is a fixed function of the token and its position, so tests know the
exact scores.
It runs a real HTTP server on a loopback port in a thread."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from servers import free_port

_TOKEN = re.compile(r"\s*(?:[A-Za-z]+|[0-9]|[^\sA-Za-z0-9])|\s+$")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def token_logprob(token: str, position: int) -> float:
    """The toy model's log-probability of ``token`` at ``position`` (0-based) of the text."""
    return -0.25 * (1 + len(token.strip()) % 5 + position % 3)


def continuation_score(prompt: str, continuation: str) -> float:
    """What a scoring client must get for ``continuation`` after ``prompt`` (the prompt's trailing spaces move
    into the continuation, and the words are tokenised together)."""
    stripped = prompt.rstrip(" ")
    text = stripped + prompt[len(stripped):] + continuation
    total, position = 0.0, 0
    for index, token in enumerate(tokens(text)):
        if position >= len(stripped):
            total += token_logprob(token, index)
        position += len(token)
    return total


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *_: Any) -> None:
        return

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": "toy-model", "object": "model"}]})
        else:
            self._send(404, {"object": "error", "message": f"no route {self.path}", "type": "NotFoundError"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        self.server.requests.append((self.path, body))
        if self.path == "/v1/chat/completions":
            self._send(200, {"id": "chat-1", "object": "chat.completion", "model": "toy-model",
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": "A fine choice."},
                                          "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}})
            return
        if self.path != "/v1/completions":
            self._send(404, {"object": "error", "message": f"no route {self.path}", "type": "NotFoundError"})
            return
        if body.get("echo") and not self.server.echo:
            self._send(400, {"object": "error", "message": "echo with logprobs is not supported",
                             "type": "BadRequestError", "code": 400})
            return
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        choices = []
        for index, prompt in enumerate(prompts):
            words = tokens(prompt)
            choice: dict[str, Any] = {"index": index, "text": " the", "logprobs": None, "finish_reason": "length"}
            if body.get("prompt_logprobs") is not None and self.server.prompt_logprobs:
                choice["prompt_logprobs"] = [None] + [
                    {str(1000 + n): {"logprob": token_logprob(t, n), "rank": 1, "decoded_token": t}}
                    for n, t in enumerate(words) if n > 0]
            if body.get("echo") and body.get("logprobs") is not None:
                offsets, position = [], 0
                for token in words:
                    offsets.append(position)
                    position += len(token)
                choice["text"] = prompt + " the"
                choice["logprobs"] = {"tokens": [*words, " the"],
                                      "token_logprobs": [None] + [token_logprob(t, n) for n, t in enumerate(words)
                                                                  if n > 0] + [-1.0],
                                      "text_offset": [*offsets, position], "top_logprobs": None}
            choices.append(choice)
        self._send(200, {"id": "cmpl-1", "object": "text_completion", "model": "toy-model", "choices": choices,
                         "usage": {"prompt_tokens": sum(len(tokens(p)) for p in prompts),
                                   "completion_tokens": len(prompts), "total_tokens": 0}})


class _Server(ThreadingHTTPServer):
    def __init__(self, port: int, *, echo: bool, prompt_logprobs: bool) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.echo = echo
        self.prompt_logprobs = prompt_logprobs
        self.requests: list[tuple[str, dict[str, Any]]] = []


@contextmanager
def vllm_double(*, echo: bool = False, prompt_logprobs: bool = True) -> Iterator[tuple[str, _Server]]:
    """(base URL ending in /v1, the server) of a running double; ``echo``/``prompt_logprobs`` say which
    scoring routes it offers."""
    server = _Server(free_port(), echo=echo, prompt_logprobs=prompt_logprobs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", server
    finally:
        server.shutdown()
        server.server_close()
