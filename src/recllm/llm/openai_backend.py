"""The ``openai`` backend: any OpenAI-compatible HTTP server (vLLM, Ollama, llama.cpp server, OpenAI, recllm).

Endpoints used, all under the base URL (which normally ends in ``/v1``):

- generation: chat requests go to ``/chat/completions``, raw-prompt requests to ``/completions`` (with
  ``chat_only=True`` a raw prompt is sent to ``/chat/completions`` as one user message instead, for servers
  such as OpenAI's that have dropped the legacy endpoint). ``temperature``, ``top_p``, ``max_tokens``,
  ``stop`` and ``seed`` are passed on; stop strings are also cut on this side, since not every server does.
  A JSON schema goes out as ``response_format={"type": "json_schema", ...}``, only when ``can_schema=True``.
- scoring (``logprobs``, ``next_token_logprobs``) by the first route the server offers, found out once by asking
  it with a two-word prompt (``can_score=true``/``false`` and ``score_route=...`` in the spec override this;
  a route named there is checked against the server, and a server that offers none says so in a
  ``CapabilityError``):

  * ``extension``: the recllm extension (``/recllm/logprobs``, ``/recllm/next_token_logprobs``), used when the
    server answers ``GET /recllm/capabilities`` (``recllm llm-serve`` does). It runs the server model's own
    scoring and gives exactly the numbers the ``hf`` backend gives in-process. The same extension provides
    exact ``count_tokens``, ``render_chat`` and ``context_length``.
  * ``echo``: the standard ``/completions`` call with ``echo=True, logprobs=1, max_tokens=1`` (vLLM and
    recllm's server support it; OpenAI's chat API and, at the time of writing, llama.cpp's server and Ollama
    do not). The server returns a log-probability per prompt token; the tokens whose ``text_offset`` lies in
    the continuation are summed.
  * ``prompt_logprobs``: vLLM's extra parameter of ``/completions``, which returns, per prompt token, the
    log-probability and decoded text of the token; the decoded tokens are laid end to end so that the last
    one ends where the prompt ends, and those in the continuation are summed.

  In both ``/completions`` routes prompt and continuation are tokenised together on the server, so a token
  merging across the boundary makes the score approximate (logged); write continuations with their leading
  space, as for the ``hf`` backend.

Retries: connection errors, timeouts, HTTP 429 and 5xx are retried up to ``max_retries`` times with
exponential backoff (``backoff * 2**attempt``, at most ``max_backoff`` seconds, or the server's
``Retry-After`` when it is shorter), and never past ``retry_deadline`` seconds from the first attempt. Other
HTTP errors, and answers that are not JSON or lack the expected fields, are reported at once as
``LLMError`` naming the URL, the status and the start of the body.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
import numpy as np
from pydantic import Field

from recllm.config import checked
from recllm.errors import ConfigError
from recllm.llm.base import LLM, CapabilityError, Completion, FinishReason, GenerationRequest, LLMError, Usage

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
SCORE_ROUTES = ("extension", "echo", "prompt_logprobs")
"""The scoring routes, in the order they are tried when the server is asked."""
ScoreRoute = Literal["extension", "echo", "prompt_logprobs"]
EXCERPT_CHARS = 300
# answers of GET /recllm/capabilities that mean "no recllm extension here" rather than an error
ABSENT_STATUS = frozenset({400, 404, 405, 422, 501})


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The first ``limit`` characters of ``text`` on one line, for error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def normalise_base_url(url: str) -> str:
    """``url`` without a trailing slash; a bare ``http://host:port`` gets ``/v1`` appended."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("the openai backend needs a base URL such as http://127.0.0.1:8001/v1")
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"openai base URL must start with http:// or https:// and name a host, got '{url}'")
    return url if parts.path else url + "/v1"


class OpenAIBackend(LLM):
    """An LLM served over the OpenAI HTTP API at ``base_url`` (e.g. ``http://127.0.0.1:8001/v1``).

    ``model`` is the served model's name; None asks the server (the first entry of ``GET /models``).
    ``api_key`` (default: ``$OPENAI_API_KEY``) is sent as a bearer token. ``timeout`` bounds each HTTP call
    in seconds. ``can_score`` and ``can_schema`` say what the server offers (see the module docstring; both
    default to False because many servers lack them). ``extension``: None uses the recllm extension when the
    server advertises it, False never asks for it (plain OpenAI API only), True requires it.
    ``concurrency`` requests of one ``generate`` call are sent at once (servers like vLLM batch them).
    ``context_length`` overrides what the server reports.
    """

    target_argument = "base_url"
    object_arguments = ("transport",)

    backend = "openai"

    @checked(skip=("transport",))
    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeout: Annotated[float, Field(gt=0)] = 120.0,
        max_retries: Annotated[int, Field(ge=0, strict=True)] = 3,
        backoff: Annotated[float, Field(ge=0)] = 0.5,
        max_backoff: Annotated[float, Field(ge=0)] = 8.0,
        retry_deadline: Annotated[float, Field(ge=0)] = 60.0,
        can_score: bool | None = None,
        score_route: ScoreRoute | None = None,
        can_schema: bool = False,
        chat_only: bool = False,
        extension: bool | None = None,
        concurrency: Annotated[int, Field(ge=1)] = 1,
        context_length: Annotated[int, Field(ge=1)] | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.retry_deadline = float(retry_deadline)
        self.chat_only = chat_only
        self.extension = extension
        self.concurrency = concurrency
        self._can_score = can_score
        self._score_route: str | None = score_route
        if score_route is not None and can_score is False:
            raise ConfigError(f"score_route={score_route!r} names a scoring route, but can_score=False turns scoring "
                              "off; drop one of them")
        self._can_schema = bool(can_schema)
        self._context_length = context_length
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._headers = dict(headers or {})
        self._transport = transport
        self._client = self._make_client()
        self._info_lock = threading.Lock()
        self._capabilities: dict[str, Any] | None = None
        self._probed = False
        super().__init__(model if model else self._served_model())

    # ---- HTTP plumbing ----------------------------------------------------------------------------
    def _make_client(self) -> httpx.Client:
        headers = {"Accept": "application/json", **self._headers}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return httpx.Client(timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)), headers=headers,
                            transport=self._transport)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> OpenAIBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the HTTP client and locks (e.g. to ship the backend to Ray workers); the copy counts its
        own usage from zero."""
        state = self.__dict__.copy()
        for name in ("_client", "_info_lock", "_transport", "usage"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._transport = None
        self._info_lock = threading.Lock()
        self.usage = Usage()
        self._client = self._make_client()

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _request(self, method: str, path: str, payload: Any = None, *, absent_ok: bool = False) -> Any:
        """The JSON answer of one call, retrying transient failures; None for an absent endpoint if
        ``absent_ok``. Every failure is an LLMError naming the URL."""
        url = self._url(path)
        start = time.monotonic()
        attempt = 0
        while True:
            problem: str
            retry_after: float | None = None
            status: int | None = None
            try:
                response = self._client.request(method, url, json=payload)
            except httpx.TimeoutException as exc:
                problem = f"timed out after {self.timeout:g} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                problem = f"is unreachable ({type(exc).__name__}: {exc})"
            else:
                if response.status_code < 400:
                    return self._decode(response, url)
                if absent_ok and response.status_code in ABSENT_STATUS:
                    return None
                problem = f"answered HTTP {response.status_code}: {excerpt(response.text) or '(empty body)'}"
                status = response.status_code
                if response.status_code not in RETRY_STATUS:
                    raise self._http_error(response, url, problem)
                retry_after = _retry_after(response)
            delay = min(self.max_backoff, self.backoff * 2 ** attempt)
            if retry_after is not None:  # the server's wish, within our own bound
                delay = min(self.max_backoff, max(delay, retry_after))
            elapsed = time.monotonic() - start
            if attempt >= self.max_retries or elapsed + delay > self.retry_deadline:
                tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
                raise LLMError(f"OpenAI-compatible server at {url} {problem} ({tries} in {elapsed:.1f} s)",
                               status=status)
            log.warning("%s %s %s; retry %d/%d in %.2f s", method, url, problem, attempt + 1, self.max_retries, delay)
            time.sleep(delay)
            attempt += 1

    @staticmethod
    def _decode(response: httpx.Response, url: str) -> Any:
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            kind = response.headers.get("content-type", "no content type")
            raise LLMError(f"OpenAI-compatible server at {url} answered HTTP {response.status_code} with a body "
                           f"that is not JSON ({kind}): {excerpt(response.text) or '(empty body)'}") from None

    @staticmethod
    def _http_error(response: httpx.Response, url: str, problem: str) -> LLMError:
        """An LLMError for a non-retried HTTP error; CapabilityError when the server says it lacks a feature."""
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            error = None
        message = f"OpenAI-compatible server at {url} {problem}"
        if isinstance(error, Mapping) and error.get("type") == "capability_error":
            return CapabilityError(message, status=response.status_code)
        return LLMError(message, status=response.status_code)

    def _post(self, path: str, payload: Mapping[str, Any]) -> Any:
        return self._request("POST", path, dict(payload))

    # ---- server facts -----------------------------------------------------------------------------
    def health(self, timeout: float = 3.0) -> str | None:
        """Asks ``GET /models`` once, without retries, within ``timeout`` seconds."""
        url = self._url("/models")
        try:
            response = self._client.get(url, timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)))
        except httpx.HTTPError as exc:
            return f"the server at {self.base_url} does not answer ({type(exc).__name__})"
        if response.status_code != 200:
            return f"the server at {self.base_url} answered HTTP {response.status_code}"
        return None

    def _served_model(self) -> str:
        url = self._url("/models")
        data = self._request("GET", "/models")
        models = _dig(data, url, "data")
        if not isinstance(models, list) or not models:
            raise LLMError(f"OpenAI-compatible server at {url} lists no models; pass model=... explicitly")
        name = _dig(data, url, "data", 0, "id")
        if not isinstance(name, str) or not name:
            raise LLMError(f"OpenAI-compatible server at {url} answered a model without a string 'id': "
                           f"{excerpt(json.dumps(models[0]))}")
        return name

    def capabilities(self) -> dict[str, Any] | None:
        """What a recllm server advertises at ``GET /recllm/capabilities`` (None for other servers, or when
        ``extension=False``). Asked once, then remembered."""
        if self.extension is False:
            return None
        with self._info_lock:
            if not self._probed:
                data = self._request("GET", "/recllm/capabilities", absent_ok=True)
                if data is not None and not (isinstance(data, Mapping) and isinstance(data.get("endpoints"), list)):
                    raise LLMError(f"OpenAI-compatible server at {self._url('/recllm/capabilities')} answered JSON "
                                   f"without an 'endpoints' list: {excerpt(json.dumps(data))}")
                self._capabilities = dict(data) if data is not None else None
                self._probed = True
                log.info("server %s: recllm extension %s", self.base_url,
                         "present" if self._capabilities else "absent")
        if self._capabilities is None and self.extension is True:
            raise CapabilityError(f"OpenAI-compatible server at {self.base_url} does not offer the recllm extension "
                                  f"(GET /recllm/capabilities); use extension=None or False")
        return self._capabilities

    def _extension_has(self, endpoint: str) -> bool:
        info = self.capabilities()
        return info is not None and endpoint in info["endpoints"]

    @property
    def can_score(self) -> bool:
        """Whether the server scores text: as configured (``can_score``), else found out once by asking it
        (``score_route``)."""
        if self._can_score is None:
            self._can_score = self.score_route() is not None
        return self._can_score

    def score_route(self) -> str | None:
        """The route scoring takes, found out once: ``extension`` (the recllm extension), ``echo`` (an echoed
        prompt with ``logprobs``) or ``prompt_logprobs`` (vLLM's extra parameter); None when the server offers
        none of them. A route named in the spec (``score_route``) is checked against the server."""
        with self._info_lock:
            routes = ([self._score_route] if self._score_route is not None else list(SCORE_ROUTES))
        for route in routes:
            if self._route_works(route):
                with self._info_lock:
                    self._score_route = route
                log.info("server %s scores by %s", self.base_url, route)
                return route
        if self._score_route is not None or self._can_score:
            raise CapabilityError(f"OpenAI-compatible server at {self.base_url} does not score by "
                                  f"{' or '.join(routes)} (asked with a two-word prompt); drop can_score=true or "
                                  f"score_route, or use a server that returns prompt log-probabilities")
        return None

    def _route_works(self, route: str) -> bool:
        """Asks the server to score a two-word prompt by ``route``; False when it answers without scores or
        refuses the request (a 4xx), an LLMError when it cannot be reached."""
        if route == "extension":
            return self.extension is not False and self._extension_has("logprobs")
        probe = "Hello world"
        payload = {"model": self.model_name, "prompt": probe, "max_tokens": 1, "temperature": 0.0}
        payload |= {"echo": True, "logprobs": 1} if route == "echo" else {"prompt_logprobs": 0}
        try:
            data = self._post("/completions", payload)
        except CapabilityError:
            return False
        except LLMError as exc:
            if _refused(exc):
                return False
            raise
        choices = _dig(data, self._url("/completions"), "choices")  # no choices at all: a broken answer, said so
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], Mapping) else {}
        if route == "echo":
            logprobs = choice.get("logprobs")
            values = logprobs.get("token_logprobs") if isinstance(logprobs, Mapping) else None
            return isinstance(values, list) and len(values) >= 2
        values = choice.get("prompt_logprobs")
        return isinstance(values, list) and len(values) >= 2

    @property
    def scores_prompts_jointly(self) -> bool:
        """Echo and ``prompt_logprobs`` scoring send every prompt in one request, which the server batches;
        recllm's own server takes them in one request too, and says whether its model scores them jointly.
        False while the server cannot be asked."""
        try:
            if not self.can_score:
                return False
            if self.score_route() != "extension":
                return True
            info = self.capabilities()
            return info is not None and "logprobs_many" in info["endpoints"] and info.get("scores_jointly") is True
        except LLMError:
            return False

    @property
    def can_schema(self) -> bool:
        return self._can_schema

    @property
    def context_length(self) -> int | None:
        if self._context_length is not None:
            return self._context_length
        try:
            info = self.capabilities()
        except LLMError as exc:
            log.warning("context length of %s unknown: %s", self.base_url, exc)
            return None
        value = info.get("context_length") if info else None
        return int(value) if isinstance(value, int) else None

    def count_tokens(self, text: str) -> int:
        """Exact through the recllm extension; otherwise the rough estimate of the base class."""
        if not text:
            return 0
        if self._extension_has("tokenize"):
            data = self._post("/recllm/tokenize", {"texts": [text]})
            counts = _dig(data, self._url("/recllm/tokenize"), "token_counts")
            if isinstance(counts, list) and len(counts) == 1 and isinstance(counts[0], int):
                return counts[0]
            raise LLMError(f"OpenAI-compatible server at {self._url('/recllm/tokenize')} answered "
                           f"'token_counts' {excerpt(json.dumps(counts))}, expected one integer")
        return super().count_tokens(text)

    def render_chat(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> str:
        """The server model's prompt text for ``messages``; needs the recllm extension."""
        request = GenerationRequest.chat(messages)  # validates roles and contents here
        if not self._extension_has("render_chat"):
            raise CapabilityError(f"backend 'openai' at {self.base_url} cannot render a chat as prompt text "
                                  f"(the server lacks the recllm extension)")
        data = self._post("/recllm/render_chat", {"messages": list(request.messages or ()),
                                                  "add_generation_prompt": add_generation_prompt})
        prompt = _dig(data, self._url("/recllm/render_chat"), "prompt")
        if not isinstance(prompt, str):
            raise LLMError(f"OpenAI-compatible server at {self._url('/recllm/render_chat')} answered a non-string "
                           f"'prompt'")
        return prompt

    # ---- generation -------------------------------------------------------------------------------
    def _generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        if self.concurrency == 1 or len(requests) == 1:
            return [self._generate_one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self._generate_one, requests))

    def _generate_one(self, request: GenerationRequest) -> Completion:
        chat = request.messages is not None or self.chat_only
        payload: dict[str, Any] = {"model": self.model_name, "max_tokens": request.max_new_tokens,
                                   "temperature": request.temperature, "top_p": request.top_p, "n": 1}
        if request.stop:
            payload["stop"] = list(request.stop)
        if request.seed is not None:
            payload["seed"] = request.seed
        if request.json_schema is not None:
            name = str(request.json_schema.get("title") or "output")
            payload["response_format"] = {"type": "json_schema",
                                          "json_schema": {"name": _schema_name(name), "schema": request.json_schema}}
        if chat:
            messages = (list(request.messages) if request.messages is not None
                        else [{"role": "user", "content": request.prompt or ""}])
            payload["messages"] = messages
            field: tuple[str, ...]
            path, field = "/chat/completions", ("message", "content")
        else:
            payload["prompt"] = request.prompt
            path, field = "/completions", ("text",)
        start = time.perf_counter()
        data = self._post(path, payload)
        seconds = time.perf_counter() - start
        url = self._url(path)
        text = _dig(data, url, "choices", 0, *field)
        if text is None and chat:  # e.g. a refusal; an empty answer, not a protocol error
            log.warning("%s answered a message without content: %s", url, excerpt(json.dumps(data)))
            text = ""
        if not isinstance(text, str):
            raise LLMError(f"OpenAI-compatible server at {url} answered a non-string choices[0].{'.'.join(field)}: "
                           f"{excerpt(json.dumps(data))}")
        reason = _dig(data, url, "choices", 0).get("finish_reason")
        finish: FinishReason = "length" if reason == "length" else "stop"
        cut = min((p for p in (text.find(s) for s in request.stop) if p >= 0), default=None)
        if cut is not None:
            text, finish = text[:cut], "stop"
        prompt_tokens, completion_tokens = self._usage_of(data, request, text)
        self.usage.record_generation(requests=1, prompt_tokens=prompt_tokens, generated_tokens=completion_tokens,
                                     seconds=seconds)
        return Completion(text=text, finish_reason=finish, prompt_tokens=prompt_tokens,
                          completion_tokens=completion_tokens)

    @staticmethod
    def _usage_of(data: Mapping[str, Any], request: GenerationRequest, text: str) -> tuple[int, int]:
        """Token counts from the answer's ``usage``; a rough estimate (4 characters a token) when absent."""
        usage = data.get("usage")
        if isinstance(usage, Mapping):
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if isinstance(prompt, int) and isinstance(completion, int):
                return prompt, completion
        log.debug("answer without usage counts; estimating them")
        source = request.prompt or " ".join(m["content"] for m in request.messages or ())
        return _estimate_tokens(source), _estimate_tokens(text)

    # ---- scoring ----------------------------------------------------------------------------------
    def _logprobs(self, prompt: str, continuations: list[str]) -> np.ndarray:
        route = self.score_route()
        if route == "extension":
            return self._extension_scores("/recllm/logprobs", {"prompt": prompt, "continuations": continuations},
                                          len(continuations))
        return np.asarray([s for s, _ in self._echo_scores(prompt, continuations)], dtype=np.float64)

    def _logprobs_many(self, jobs: list[tuple[str, list[str]]]) -> list[np.ndarray]:
        if self.score_route() != "extension":
            return [np.asarray([s for s, _ in scores], dtype=np.float64) for scores in self._echo_scores_many(jobs)]
        if not self._extension_has("logprobs_many"):  # an older recllm server: one request a prompt
            return super()._logprobs_many(jobs)
        path = "/recllm/logprobs_many"
        start = time.perf_counter()
        data = self._post(path, {"model": self.model_name, "jobs": [{"prompt": p, "continuations": c}
                                                                     for p, c in jobs]})
        url = self._url(path)
        rows = _dig(data, url, "logprobs")
        if not isinstance(rows, list) or len(rows) != len(jobs) or any(
                not isinstance(row, list) or len(row) != len(conts) or not all(_is_number(v) for v in row)
                for row, (_, conts) in zip(rows, jobs, strict=False)):
            raise LLMError(f"OpenAI-compatible server at {url} answered 'logprobs' {excerpt(json.dumps(rows))}, "
                           f"expected {len(jobs)} lists of {', '.join(str(len(c)) for _, c in jobs)} numbers")
        self._record_extension_usage(data, start)
        return [np.asarray(row, dtype=np.float64) for row in rows]

    def _next_token_logprobs(self, prompt: str, tokens: list[str]) -> np.ndarray:
        if self.score_route() == "extension" and self._extension_has("next_token_logprobs"):
            return self._extension_scores("/recllm/next_token_logprobs", {"prompt": prompt, "tokens": tokens},
                                          len(tokens))
        scores = []
        for i, (score, n_tokens) in enumerate(self._echo_scores(prompt, tokens)):
            if n_tokens != 1:
                raise LLMError(f"label tokens[{i}] {tokens[i]!r} is {n_tokens} tokens for {self.model_name} at "
                               f"{self.base_url}; next_token_logprobs needs single-token labels")
            scores.append(score)
        return np.asarray(scores, dtype=np.float64)

    def _extension_scores(self, path: str, payload: dict[str, Any], n: int) -> np.ndarray:
        start = time.perf_counter()
        data = self._post(path, {"model": self.model_name, **payload})
        url = self._url(path)
        values = _dig(data, url, "logprobs")
        if not isinstance(values, list) or len(values) != n or not all(_is_number(v) for v in values):
            raise LLMError(f"OpenAI-compatible server at {url} answered 'logprobs' {excerpt(json.dumps(values))}, "
                           f"expected {n} numbers")
        self._record_extension_usage(data, start)
        return np.asarray(values, dtype=np.float64)

    def _record_extension_usage(self, data: Mapping[str, Any], start: float) -> None:
        """The tokens an extension scoring answer says it read and scored, and the seconds since ``start``."""
        given = data.get("usage")
        usage: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
        self.usage.record_scoring(prompt_tokens=int(usage.get("prompt_tokens", 0)),
                                  scored_tokens=int(usage.get("scored_tokens", 0)),
                                  seconds=time.perf_counter() - start)

    def _echo_scores(self, prompt: str, continuations: list[str]) -> list[tuple[float, int]]:
        """(sum of log-probabilities, number of tokens) of each continuation, from ``/completions`` with
        ``echo``. Trailing spaces of the prompt move into each continuation, as in the hf backend."""
        return self._echo_scores_many([(prompt, continuations)])[0]

    def _echo_scores_many(self, jobs: list[tuple[str, list[str]]]) -> list[list[tuple[float, int]]]:
        """``_echo_scores`` of several prompts in one ``/completions`` request (the server batches its prompts)."""
        results: list[list[tuple[float, int]]] = [[(0.0, 0)] * len(conts) for _, conts in jobs]
        texts: list[str] = []
        places: list[tuple[int, int, int]] = []  # (job, continuation, boundary) of each echoed text
        for j, (prompt, continuations) in enumerate(jobs):
            stripped = prompt.rstrip(" ")
            spaces = prompt[len(stripped):]
            for i, continuation in enumerate(continuations):
                if spaces + continuation:
                    texts.append(stripped + spaces + continuation)
                    places.append((j, i, len(stripped)))
        if not texts:
            return results
        url = self._url("/completions")
        start = time.perf_counter()
        vllm = self.score_route() == "prompt_logprobs"
        route = {"prompt_logprobs": 0} if vllm else {"echo": True, "logprobs": 1}
        data = self._post("/completions", {"model": self.model_name, "prompt": texts, "max_tokens": 1,
                                           "temperature": 0.0, **route})
        choices = _dig(data, url, "choices")
        if not isinstance(choices, list) or len(choices) != len(texts):
            raise LLMError(f"OpenAI-compatible server at {url} answered {_count(choices)} choices for "
                           f"{len(texts)} echoed prompts")
        prompt_tokens = scored_tokens = 0
        for position, choice in enumerate(choices):
            index = choice.get("index", position) if isinstance(choice, Mapping) else position
            if not isinstance(index, int) or not 0 <= index < len(texts):
                raise LLMError(f"OpenAI-compatible server at {url} answered a choice with index {index!r}")
            if vllm:
                choice = _echoed_from_prompt_logprobs(choice, url, len(texts[index]))
            job, slot, boundary = places[index]
            total, n_before, n_inside = self._sum_continuation(choice, url, boundary, len(texts[index]))
            results[job][slot] = (total, n_inside)
            prompt_tokens += n_before
            scored_tokens += n_inside
        self.usage.record_scoring(prompt_tokens=prompt_tokens, scored_tokens=scored_tokens,
                                  seconds=time.perf_counter() - start)
        return results

    def _sum_continuation(self, choice: Any, url: str, boundary: int, end: int) -> tuple[float, int, int]:
        """Sum of the echoed token log-probabilities with text offsets in [boundary, end)."""
        logprobs = _dig(choice, url, "logprobs")
        if logprobs is None:
            raise CapabilityError(f"OpenAI-compatible server at {url} returned no logprobs for an echoed prompt: it "
                                  f"does not support echo scoring (construct the backend with can_score=False)")
        tokens = _dig(logprobs, url, "tokens")
        values = _dig(logprobs, url, "token_logprobs")
        offsets = logprobs.get("text_offset") if isinstance(logprobs, Mapping) else None
        if not isinstance(tokens, list) or not isinstance(values, list) or len(tokens) != len(values):
            raise LLMError(f"OpenAI-compatible server at {url} answered logprobs.tokens and token_logprobs that are "
                           f"not lists of equal length")
        if not isinstance(offsets, list) or len(offsets) != len(tokens):
            offsets, position = [], 0  # no offsets: assume the tokens concatenate to the echoed text
            for token in tokens:
                offsets.append(position)
                position += len(token) if isinstance(token, str) else 0
        total, n_before, n_inside = 0.0, 0, 0
        for token, value, offset in zip(tokens, values, offsets, strict=True):
            if not isinstance(offset, int):
                raise LLMError(f"OpenAI-compatible server at {url} answered a non-integer text_offset {offset!r}")
            if offset < boundary:
                n_before += 1
                if isinstance(token, str) and offset + len(token) > boundary:
                    log.warning("token %r merges across the prompt/continuation boundary at %s; the score is "
                                "approximate", token, url)
            elif offset < end:
                if not _is_number(value):
                    raise LLMError(f"OpenAI-compatible server at {url} answered token_logprob {value!r} for "
                                   f"continuation token {token!r}")
                total += float(value)
                n_inside += 1
        if n_before == 0:
            raise LLMError(f"OpenAI-compatible server at {url} echoed no prompt tokens before offset {boundary}; "
                           f"it does not seem to honour echo=True")
        return total, n_before, n_inside

    def __repr__(self) -> str:
        return f"OpenAIBackend(url={self.base_url!r}, model={self.model_name!r})"


def _echoed_from_prompt_logprobs(choice: Any, url: str, length: int) -> dict[str, Any]:
    """vLLM's ``prompt_logprobs`` (one ``{token_id: {"logprob", "rank", "decoded_token"}}`` per prompt token,
    None for the first, which has no context and whose text is not returned) as the ``logprobs`` of an echoed
    prompt of ``length`` characters: tokens, log-probabilities and text offsets, the decoded tokens laid end to
    end so that the last one ends where the prompt ends."""
    entries = choice.get("prompt_logprobs") if isinstance(choice, Mapping) else None
    if not isinstance(entries, list) or not entries:
        raise LLMError(f"OpenAI-compatible server at {url} answered no 'prompt_logprobs' list; it does not score "
                       "by vLLM's prompt_logprobs (use score_route=echo or extension)")
    tokens: list[str] = []
    values: list[float] = []
    for number, entry in enumerate(entries):
        if entry is None and number == 0:
            continue
        if not isinstance(entry, Mapping) or not entry:
            raise LLMError(f"OpenAI-compatible server at {url} answered prompt_logprobs[{number}] = "
                           f"{excerpt(json.dumps(entry))}, expected an object keyed by token id")
        ranked = [v for v in entry.values() if isinstance(v, Mapping)]
        chosen = min(ranked, key=lambda v: v.get("rank", 0) if isinstance(v.get("rank"), int) else 0) \
            if ranked else None
        if chosen is None or not _is_number(chosen.get("logprob")) or not isinstance(chosen.get("decoded_token"), str):
            raise LLMError(f"OpenAI-compatible server at {url} answered prompt_logprobs[{number}] without a numeric "
                           f"'logprob' and a 'decoded_token': {excerpt(json.dumps(entry))}")
        tokens.append(chosen["decoded_token"])
        values.append(float(chosen["logprob"]))
    start = length - sum(len(t) for t in tokens)
    if start < 0:
        raise LLMError(f"OpenAI-compatible server at {url} answered prompt_logprobs whose tokens are longer than "
                       "the prompt; they cannot be placed in it")
    offsets = []
    for token in tokens:
        offsets.append(start)
        start += len(token)
    first = [""] if entries[0] is None else []  # the token without a log-probability counts as before the text
    return {"logprobs": {"tokens": first + tokens, "token_logprobs": [None] * len(first) + values,
                         "text_offset": [0] * len(first) + offsets}}


def _refused(exc: LLMError) -> bool:
    """Whether an LLMError is the server refusing a request (an HTTP 4xx that is not retried: not a timeout or
    rate limit, not a failure to reach it)."""
    return exc.status is not None and 400 <= exc.status < 500 and exc.status not in RETRY_STATUS


def _estimate_tokens(text: str) -> int:
    """The base class's rough count (4 characters a token), for answers without usage counts."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def _dig(data: Any, url: str, *path: str | int) -> Any:
    """``data[path[0]][path[1]]...``; a missing step is an LLMError describing the expected shape."""
    current = data
    for depth, step in enumerate(path):
        ok = (isinstance(current, Mapping) and isinstance(step, str) and step in current) or (
            isinstance(current, list) and isinstance(step, int) and -len(current) <= step < len(current))
        if not ok:
            where = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in path[:depth + 1]).lstrip(".")
            raise LLMError(f"OpenAI-compatible server at {url} answered JSON of an unexpected shape (no '{where}'): "
                           f"{excerpt(json.dumps(data))}")
        current = current[step]
    return current


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def _count(value: Any) -> str:
    return str(len(value)) if isinstance(value, list) else "no list of"


def _schema_name(name: str) -> str:
    """OpenAI wants ``[a-zA-Z0-9_-]{1,64}`` as the schema name."""
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:64]
    return cleaned or "output"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
