"""What an operator needs around the API: request metrics in Prometheus' text format, an optional API key for
writes and admin routes, the body-size limit and JSON-only request bodies (415 otherwise), in one plain ASGI
layer (no per-request middleware objects: each request costs a clock read and a few dictionary updates).

Metrics: ``recllm_requests_total{route,method,status}``, ``recllm_request_seconds`` (a histogram by route),
``recllm_llm_requests_in_flight`` and, read from the service when rendered, the LLM's calls, latency and
response-cache hit rate. Routes are the app's path templates (``/users/{user}/recommendations``), so ids do
not explode the label set.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the latency histogram's buckets."""


class Metrics:
    """Thread-safe counters and latency histograms by route."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (route, method, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            counts = self.buckets.setdefault(route, [0] * len(BUCKETS))
            for index, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[index] += 1
            self.sums[route] = self.sums.get(route, 0.0) + seconds
            self.counts[route] = self.counts.get(route, 0) + 1

    def render(self, extra: Iterable[str] = ()) -> str:
        """The metrics in Prometheus' text exposition format (version 0.0.4)."""
        with self._lock:
            lines = ["# HELP recllm_requests_total HTTP requests answered, by route, method and status.",
                     "# TYPE recllm_requests_total counter"]
            for (route, method, status), n in sorted(self.requests.items()):
                lines.append(f'recllm_requests_total{{route="{_label(route)}",method="{method}",status="{status}"}} '
                             f"{n}")
            lines += ["# HELP recllm_request_seconds Time to answer a request, by route.",
                      "# TYPE recllm_request_seconds histogram"]
            for route in sorted(self.buckets):
                label = _label(route)
                for bound, n in zip(BUCKETS, self.buckets[route], strict=True):
                    lines.append(f'recllm_request_seconds_bucket{{route="{label}",le="{bound:g}"}} {n}')
                lines.append(f'recllm_request_seconds_bucket{{route="{label}",le="+Inf"}} {self.counts[route]}')
                lines.append(f'recllm_request_seconds_sum{{route="{label}"}} {self.sums[route]:.6f}')
                lines.append(f'recllm_request_seconds_count{{route="{label}"}} {self.counts[route]}')
        return "\n".join([*lines, *extra]) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Operations:
    """The ASGI layer around the app (see the module docstring). ``api_key``: when set, writes (``protected``
    paths and methods) and admin routes need it as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""

    def __init__(self, app: ASGIApp, metrics: Metrics, *, max_body: int, api_key: str | None = None,
                 protected: Callable[[str, str], bool] = lambda method, path: False) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.api_key = api_key
        self.protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        length = headers.get("content-length")
        try:
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                await _answer(sending, 413, f"request body over {self.max_body:,} bytes")
            elif method in _BODY_METHODS and _has_body(headers) and not _is_json(headers.get("content-type", "")):
                await _answer(sending, 415, f"the request body must be JSON (Content-Type: application/json), got "
                                            f"{headers.get('content-type') or 'no Content-Type'}")
            elif self.api_key is not None and self.protected(method, path) and not self._authorised(headers):
                await _answer(sending, 401, "this route needs the service's API key (Authorization: Bearer KEY "
                                            "or X-API-Key: KEY)", {"www-authenticate": "Bearer"})
            else:
                await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")  # set by the router when a route matched
            template = getattr(route, "path", None) or ("(unmatched)" if status["code"] == 404 else "(refused)")
            self.metrics.observe(template, method, status["code"], time.perf_counter() - started)

    def _authorised(self, headers: dict[str, str]) -> bool:
        given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ").strip()
        return bool(given) and hmac.compare_digest(given.encode(), str(self.api_key).encode())


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _has_body(headers: dict[str, str]) -> bool:
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers


def _is_json(content_type: str) -> bool:
    """application/json, or a structured +json type (charset and other parameters allowed)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def _answer(send: Send, status: int, error: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": error}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
