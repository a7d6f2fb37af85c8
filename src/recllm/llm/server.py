"""An OpenAI-compatible HTTP endpoint over any recllm ``LLM`` (in practice the ``hf`` backend).

One warm model shared by several processes: ``serve_llm("hf", port=8001)`` (what ``recllm llm-serve`` runs),
then ``create_llm("openai:http://127.0.0.1:8001/v1", can_score=True)`` anywhere.

Endpoints (an OpenAI subset, plus a recllm extension under ``/v1/recllm``):

- ``GET /health``; ``GET /v1/models`` (the one served model, with the extension's capabilities under
  ``recllm``).
- ``POST /v1/chat/completions`` and ``POST /v1/completions``: ``temperature``, ``top_p``, ``max_tokens``
  (chat also ``max_completion_tokens``), ``stop``, ``seed``, ``n``; ``response_format`` json_schema when the
  model can honour it. ``/v1/completions`` also takes a list of prompts, and ``echo`` and ``logprobs``
  (0-20) when the model is an ``hf`` backend: ``choices[i].logprobs`` then holds ``tokens``,
  ``token_logprobs`` (None for the very first token), ``text_offset`` and ``top_logprobs`` of the echoed
  prompt (tokenised as the hf backend tokenises a prompt) followed by the completion (tokenised as a
  continuation). Offsets count characters of the returned ``text``. ``max_tokens=0`` with ``echo`` only
  scores the prompt. Streaming and chat ``logprobs`` are not offered (400).
- ``GET /v1/recllm/capabilities``; ``POST /v1/recllm/logprobs`` ``{prompt, continuations}`` and
  ``POST /v1/recllm/next_token_logprobs`` ``{prompt, tokens}`` (the model's own scoring, so the numbers equal
  the in-process ones exactly); ``POST /v1/recllm/logprobs_many`` ``{jobs: [{prompt, continuations}, ...]}``
  (several prompts in one call, joint where the model ``scores_prompts_jointly``, which the capabilities say as
  ``scores_jointly``); ``POST /v1/recllm/tokenize`` ``{texts}``; ``POST /v1/recllm/render_chat``
  ``{messages, add_generation_prompt}``. ``recllm.llm.openai_backend.OpenAIBackend`` uses these when
  the server advertises them.

Errors have OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``: malformed JSON and invalid
fields are 400 naming the field; a request the model cannot do is 400 (``type`` ``capability_error`` when a
capability is missing); an unexpected failure is 500 with a one-line message (the traceback goes to the log).
Requests are served one at a time behind a lock: the model is not thread-safe.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from recllm._version import __version__
from recllm.llm.base import LLM, CapabilityError, Completion, GenerationRequest, LLMError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from recllm.llm.hf import HFBackend

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_ITEMS = 4096  # longest list of prompts, continuations, labels or texts one request may carry
EXTENSION_ENDPOINTS = ("capabilities", "logprobs", "logprobs_many", "next_token_logprobs", "tokenize", "render_chat")


# ---- request and response models ------------------------------------------------------------------------
class _OpenAIRequest(BaseModel):
    """OpenAI clients send many optional fields; unknown ones are accepted and logged, known ones validated."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    temperature: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    n: Annotated[int, Field(ge=1, le=16)] = 1
    stop: str | Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=16)] | None = None
    seed: int | None = None
    stream: bool = False

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class TextPart(BaseModel):
    """One part of a message's content list; only text parts are understood."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """A chat message; ``developer`` (OpenAI's newer name for ``system``) is read as ``system``."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def as_dict(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class JSONSchemaFormat(BaseModel):
    """``response_format.json_schema``: the schema the output must follow (``name`` is informational)."""

    model_config = ConfigDict(extra="allow")

    name: str = "output"
    schema_: dict[str, Any] = Field(alias="schema")


class ResponseFormat(BaseModel):
    """OpenAI's ``response_format``; anything but ``text`` needs a model with ``can_schema``."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class ChatCompletionRequest(_OpenAIRequest):
    """Body of ``POST /v1/chat/completions``; ``max_completion_tokens`` wins over ``max_tokens``."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None


class CompletionRequest(_OpenAIRequest):
    """Body of ``POST /v1/completions``; ``max_tokens=0`` with ``echo`` scores the prompt without generating."""

    prompt: str | Annotated[list[str], Field(min_length=1, max_length=MAX_ITEMS)]
    max_tokens: Annotated[int, Field(ge=0)] = 16
    echo: bool = False
    logprobs: Annotated[int, Field(ge=0, le=20)] | None = None

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class _ExtensionRequest(BaseModel):
    """The recllm extension's bodies: strict (a misspelt key is a 400), ``model`` accepted and ignored."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None


class LogprobsRequest(_ExtensionRequest):
    """Body of ``POST /v1/recllm/logprobs``: score each continuation after ``prompt``."""

    prompt: str
    continuations: Annotated[list[str], Field(max_length=MAX_ITEMS)]


class ScoringJob(BaseModel):
    """One prompt and the continuations to score after it, in ``POST /v1/recllm/logprobs_many``."""

    model_config = ConfigDict(extra="forbid")
    prompt: str
    continuations: Annotated[list[str], Field(max_length=MAX_ITEMS)]


class LogprobsManyRequest(_ExtensionRequest):
    """Body of ``POST /v1/recllm/logprobs_many``: several prompts' continuations scored in one call."""

    jobs: Annotated[list[ScoringJob], Field(max_length=MAX_ITEMS)]


class NextTokenRequest(_ExtensionRequest):
    """Body of ``POST /v1/recllm/next_token_logprobs``: single-token labels as the next token."""

    prompt: str
    tokens: Annotated[list[str], Field(max_length=MAX_ITEMS)]


class TokenizeRequest(_ExtensionRequest):
    """Body of ``POST /v1/recllm/tokenize``: texts whose tokens are counted as the model counts a prompt."""

    texts: Annotated[list[str], Field(max_length=MAX_ITEMS)]


class RenderChatRequest(_ExtensionRequest):
    """Body of ``POST /v1/recllm/render_chat``: messages to render with the model's chat template."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    add_generation_prompt: bool = True


class UsageInfo(BaseModel):
    """OpenAI's token counts of one answer."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatChoiceMessage(BaseModel):
    """The assistant message of a chat choice."""

    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    """One chat answer."""

    index: int
    message: ChatChoiceMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletionResponse(BaseModel):
    """Answer of ``POST /v1/chat/completions``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageInfo


class TokenLogprobs(BaseModel):
    """Per-token numbers of a completion choice, in OpenAI's legacy layout."""

    tokens: list[str]
    token_logprobs: list[float | None]
    text_offset: list[int]
    top_logprobs: list[dict[str, float] | None] | None = None


class CompletionChoice(BaseModel):
    """One text completion (the prompt in front when ``echo``)."""

    index: int
    text: str
    finish_reason: str
    logprobs: TokenLogprobs | None = None


class CompletionResponse(BaseModel):
    """Answer of ``POST /v1/completions``."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageInfo


class ScoreUsage(BaseModel):
    """Tokens the model read (prompt) and scored (continuations or labels) for one scoring call."""

    prompt_tokens: int
    scored_tokens: int


class ScoresResponse(BaseModel):
    """Answer of the extension's scoring endpoints: one natural-log probability per continuation or label."""

    object: Literal["recllm.logprobs"] = "recllm.logprobs"
    model: str
    logprobs: list[float]
    usage: ScoreUsage


class ScoresManyResponse(BaseModel):
    """Answer of ``POST /v1/recllm/logprobs_many``: each job's continuation log-probabilities, in order."""

    object: Literal["recllm.logprobs_many"] = "recllm.logprobs_many"
    model: str
    logprobs: list[list[float]]
    usage: ScoreUsage


class TokenizeResponse(BaseModel):
    """Answer of ``POST /v1/recllm/tokenize``."""

    model: str
    token_counts: list[int]


class RenderChatResponse(BaseModel):
    """Answer of ``POST /v1/recllm/render_chat``: the exact prompt text the model would read."""

    model: str
    prompt: str


class Capabilities(BaseModel):
    """What this server offers; ``GET /v1/recllm/capabilities`` and ``/v1/models`` (under ``recllm``)."""

    recllm_version: str
    backend: str
    model: str
    can_score: bool
    can_schema: bool
    context_length: int | None
    echo_logprobs: bool
    scores_jointly: bool = False
    endpoints: list[str]


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models``."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "recllm"
    recllm: Capabilities


class ModelList(BaseModel):
    """Answer of ``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class RequestError(Exception):
    """A request the server refuses: answered with ``status`` and an OpenAI-shaped error body."""

    def __init__(self, message: str, *, status: int = 400, kind: str = "invalid_request_error",
                 param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.kind, self.param = message, status, kind, param


# ---- per-token log-probabilities (hf backend only) -------------------------------------------------------
@dataclass
class _Scored:
    tokens: list[str]
    offsets: list[int]
    values: list[float | None]
    top: list[dict[str, float] | None]


def _hf_of(llm: LLM) -> HFBackend | None:
    """The hf backend behind ``llm`` (unwrapping a CachedLLM), or None: only it gives per-token numbers."""
    from recllm.llm.hf import HFBackend

    inner: Any = llm
    for _ in range(4):
        if isinstance(inner, HFBackend):
            return inner
        inner = getattr(inner, "inner", None)
    return None


def _token_logprobs(hf: HFBackend, prompt: str, completion: str, top: int) -> _Scored:
    """Log-probability of every token of ``prompt + completion``: the prompt tokenised as the hf backend
    tokenises a prompt (special tokens added), the completion as a continuation (none added)."""
    import torch

    tokenizer = hf.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise CapabilityError(f"the tokenizer of {hf.model_name} gives no character offsets; echo/logprobs need a "
                              f"fast tokenizer (use /v1/recllm/logprobs)")
    bos = tokenizer.bos_token
    ids: list[int] = []
    spans: list[tuple[int, int]] = []
    for piece, shift, special in ((prompt, 0, not (bos and prompt.startswith(bos))), (completion, len(prompt), False)):
        if not piece:
            continue
        encoded = tokenizer(piece, add_special_tokens=special, return_offsets_mapping=True)
        ids.extend(int(i) for i in encoded["input_ids"])
        spans.extend((start + shift, end + shift) for start, end in encoded["offset_mapping"])
    if not ids:
        raise LLMError("echo/logprobs: the text has no tokens")
    limit = hf.context_length
    if limit is not None and len(ids) > limit:
        raise LLMError(f"echoed text has {len(ids)} tokens, more than the model's context of {limit}")
    with torch.inference_mode():
        logits = hf.model(input_ids=torch.tensor([ids], device=hf.device)).logits[0, :-1]
        logp = torch.log_softmax(logits.float(), dim=-1)
        picked = logp.gather(-1, torch.tensor(ids[1:], device=logp.device).unsqueeze(-1)).squeeze(-1)
        values: list[float | None] = [None, *(float(v) for v in picked.double().cpu())]
        top_rows: list[dict[str, float] | None] = [None]
        if top > 0:
            best = torch.topk(logp, k=top, dim=-1)
            for row_values, row_ids in zip(best.values.double().cpu(), best.indices.cpu(), strict=True):
                pairs = zip(row_values, row_ids, strict=True)
                top_rows.append({str(tokenizer.decode([int(i)])): float(v) for v, i in pairs})
    text = prompt + completion
    special_ids = set(tokenizer.all_special_ids)
    tokens, offsets, reached = [], [], 0
    for token_id, (start, end) in zip(ids, spans, strict=True):
        if start == end and token_id in special_ids:  # e.g. an added BOS: not in the text
            tokens.append(str(tokenizer.convert_ids_to_tokens(token_id)))
            offsets.append(start)
            continue
        begin = max(start, reached)  # bytes of one character split over tokens: the first token carries it
        tokens.append(text[begin:end] if end > begin else "")
        offsets.append(begin)
        reached = max(reached, end)
    return _Scored(tokens=tokens, offsets=offsets, values=values, top=top_rows if top > 0 else [])


# ---- the app ---------------------------------------------------------------------------------------------
class _Service:
    """The model behind one lock, and the translation between OpenAI requests and recllm calls."""

    def __init__(self, llm: LLM, default_max_tokens: int) -> None:
        self.llm = llm
        self.name = llm.model_name
        self.default_max_tokens = default_max_tokens
        self.lock = threading.Lock()
        self.created = int(time.time())
        self.echo_logprobs = False
        with contextlib.suppress(ImportError):  # torch/transformers missing: no hf backend can be behind it
            self.echo_logprobs = _hf_of(llm) is not None

    def locked(self, call: Callable[[], T]) -> T:
        """Run one model call alone; a model error becomes a 400 (its message), anything else a 500."""
        with self.lock:
            try:
                return call()
            except CapabilityError as exc:
                raise RequestError(str(exc), kind="capability_error") from None
            except LLMError as exc:
                raise RequestError(str(exc)) from None
            except RequestError:
                raise
            except Exception as exc:
                log.exception("model call failed")
                raise RequestError(f"internal error in the model ({type(exc).__name__}: {exc}); see the server log",
                                   status=500, kind="server_error") from None

    def capabilities(self) -> Capabilities:
        return Capabilities(recllm_version=__version__, backend=self.llm.backend, model=self.name,
                            can_score=self.llm.can_score, can_schema=self.llm.can_schema,
                            context_length=self.llm.context_length, echo_logprobs=self.echo_logprobs,
                            scores_jointly=self.llm.can_score and self.llm.scores_prompts_jointly,
                            endpoints=list(EXTENSION_ENDPOINTS))

    @staticmethod
    def check_common(request: _OpenAIRequest, where: str) -> None:
        if request.stream:
            raise RequestError(f"{where}: stream=true is not supported by this server", param="stream")
        if request.model_extra:
            log.info("%s: ignoring unsupported fields %s", where, sorted(request.model_extra))

    def schema_of(self, fmt: ResponseFormat | None) -> dict[str, Any] | None:
        if fmt is None or fmt.type == "text":
            return None
        if not self.llm.can_schema:
            raise RequestError(f"response_format {fmt.type}: model {self.name} ({self.llm.backend} backend) cannot "
                               f"constrain output to a JSON schema", kind="capability_error", param="response_format")
        if fmt.type == "json_object":
            return {"type": "object"}
        if fmt.json_schema is None:
            raise RequestError("response_format of type json_schema needs a 'json_schema' object",
                               param="response_format.json_schema")
        return fmt.json_schema.schema_

    def chat(self, body: ChatCompletionRequest) -> ChatCompletionResponse:
        self.check_common(body, "/v1/chat/completions")
        if body.logprobs:
            raise RequestError("logprobs on /v1/chat/completions are not supported; use /v1/completions with echo "
                               "and logprobs, or /v1/recllm/logprobs", param="logprobs")
        max_tokens = body.max_completion_tokens or body.max_tokens or self.default_max_tokens
        request = _request(lambda: GenerationRequest.chat(
            [m.as_dict() for m in body.messages], max_new_tokens=max_tokens, temperature=body.temperature,
            top_p=body.top_p, stop=body.stops(), seed=body.seed, json_schema=self.schema_of(body.response_format)))
        completions = self.locked(lambda: self.llm.generate([request] * body.n))
        choices = [ChatChoice(index=i, message=ChatChoiceMessage(content=c.text), finish_reason=c.finish_reason)
                   for i, c in enumerate(completions)]
        return ChatCompletionResponse(id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=self.name,
                                      choices=choices, usage=_usage(completions, body.n))

    def complete(self, body: CompletionRequest) -> CompletionResponse:
        self.check_common(body, "/v1/completions")
        prompts = body.prompts()
        wants_scores = body.logprobs is not None
        if wants_scores and not self.echo_logprobs:
            raise RequestError(f"logprobs on /v1/completions need an hf model behind the server (this one is "
                               f"{self.llm.backend}); use /v1/recllm/logprobs", kind="capability_error",
                               param="logprobs")
        if body.max_tokens == 0 and not body.echo:
            raise RequestError("max_tokens=0 is only meaningful with echo=true", param="max_tokens")
        requests = [] if body.max_tokens == 0 else [
            _request(functools.partial(GenerationRequest.text, p, max_new_tokens=body.max_tokens,
                                       temperature=body.temperature, top_p=body.top_p, stop=body.stops(),
                                       seed=body.seed))
            for p in prompts for _ in range(body.n)]

        def run() -> tuple[list[CompletionChoice], list[Completion]]:
            completions: list[Completion] = self.llm.generate(requests) if requests else [
                Completion(text="", finish_reason="length", prompt_tokens=self.llm.count_tokens(p),
                           completion_tokens=0) for p in prompts for _ in range(body.n)]
            hf = _hf_of(self.llm) if wants_scores else None
            choices = []
            for index, completion in enumerate(completions):
                prompt = prompts[index // body.n]
                scores = None
                if hf is not None:
                    scored = _token_logprobs(hf, prompt, completion.text, body.logprobs or 0)
                    scores = _slice_scores(scored, 0 if body.echo else len(prompt), body.logprobs or 0)
                choices.append(CompletionChoice(index=index, text=(prompt if body.echo else "") + completion.text,
                                                finish_reason=completion.finish_reason, logprobs=scores))
            return choices, completions

        choices, completions = self.locked(run)
        return CompletionResponse(id=f"cmpl-{uuid.uuid4().hex}", created=int(time.time()), model=self.name,
                                  choices=choices, usage=_usage(completions, body.n))

    def scores(self, method: str, prompt: str, texts: list[str]) -> ScoresResponse:
        def run() -> tuple[list[float], int, int]:
            usage = self.llm.usage
            before = (usage.prompt_tokens, usage.scored_tokens)
            call = self.llm.logprobs if method == "logprobs" else self.llm.next_token_logprobs
            values = [float(v) for v in call(prompt, texts)]
            return values, usage.prompt_tokens - before[0], usage.scored_tokens - before[1]

        values, prompt_tokens, scored_tokens = self.locked(run)
        return ScoresResponse(model=self.name, logprobs=values,
                              usage=ScoreUsage(prompt_tokens=prompt_tokens, scored_tokens=scored_tokens))


    def scores_many(self, jobs: list[ScoringJob]) -> ScoresManyResponse:
        def run() -> tuple[list[list[float]], int, int]:
            usage = self.llm.usage
            before = (usage.prompt_tokens, usage.scored_tokens)
            values = self.llm.logprobs_many([(job.prompt, job.continuations) for job in jobs])
            return ([[float(v) for v in row] for row in values], usage.prompt_tokens - before[0],
                    usage.scored_tokens - before[1])

        values, prompt_tokens, scored_tokens = self.locked(run)
        return ScoresManyResponse(model=self.name, logprobs=values,
                                  usage=ScoreUsage(prompt_tokens=prompt_tokens, scored_tokens=scored_tokens))


def _request(build: Callable[[], GenerationRequest]) -> GenerationRequest:
    try:
        return build()
    except LLMError as exc:
        raise RequestError(str(exc)) from None


def _usage(completions: Sequence[Completion], n: int) -> UsageInfo:
    prompt = sum(c.prompt_tokens for c in completions[::n])  # each prompt counted once, as OpenAI does
    generated = sum(c.completion_tokens for c in completions)
    return UsageInfo(prompt_tokens=prompt, completion_tokens=generated, total_tokens=prompt + generated)


def _slice_scores(scored: _Scored, start: int, top: int) -> TokenLogprobs:
    """The tokens from character ``start`` on, with offsets made relative to ``start``."""
    keep = [j for j, offset in enumerate(scored.offsets) if offset >= start]
    return TokenLogprobs(tokens=[scored.tokens[j] for j in keep],
                         token_logprobs=[scored.values[j] for j in keep],
                         text_offset=[scored.offsets[j] - start for j in keep],
                         top_logprobs=[scored.top[j] for j in keep] if top > 0 else None)


def _error_body(message: str, kind: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def _validation_message(errors: Sequence[Any]) -> tuple[str, str | None]:
    """One line for FastAPI's validation errors, naming each field; and the first field's name."""
    parts, first = [], None
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        if err.get("type") == "json_invalid":  # loc is ("body", character position)
            reason = (err.get("ctx") or {}).get("error", "")
            where = f" at character {loc[0]}" if loc else ""
            parts.append(f"the request body is not valid JSON ({reason or 'decode error'}{where})")
            first = first or "body"
            continue
        field = ".".join(loc) or "body"
        first = first or field
        if field == "body" and err.get("type") == "missing":
            parts.append("the request needs a JSON object as its body")
            continue
        got = ""
        if "input" in err and err.get("type") != "missing":
            got = f" (got {err['input']!r})"[:120]
        parts.append(f"{field}: {err.get('msg', 'invalid')}{got}")
    return "; ".join(parts) or "invalid request", first


def create_app(llm: LLM, *, default_max_tokens: int = 256) -> FastAPI:
    """An OpenAI-compatible FastAPI app serving ``llm`` (see the module docstring for the endpoints).

    ``default_max_tokens`` bounds a chat completion that names no ``max_tokens``.
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    service = _Service(llm, default_max_tokens)
    app = FastAPI(title="recllm LLM server", version=__version__,
                  description=f"OpenAI-compatible endpoint over {llm.backend}:{llm.model_name}")
    app.state.service = service

    @app.exception_handler(RequestError)
    async def _refused(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(_error_body(exc.message, exc.kind, exc.param), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc.errors())
        return JSONResponse(_error_body(message, "invalid_request_error", param), status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(_error_body(str(exc.detail), "invalid_request_error"), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=exc)
        return JSONResponse(_error_body(f"internal server error ({type(exc).__name__}); see the server log",
                                        "server_error"), status_code=500)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model": service.name, "backend": llm.backend}

    @app.get("/v1/models")
    def models() -> ModelList:
        return ModelList(data=[ModelCard(id=service.name, created=service.created, recllm=service.capabilities())])

    @app.post("/v1/chat/completions")
    def chat_completions(body: ChatCompletionRequest) -> ChatCompletionResponse:
        return service.chat(body)

    @app.post("/v1/completions")
    def completions(body: CompletionRequest) -> CompletionResponse:
        return service.complete(body)

    @app.get("/v1/recllm/capabilities")
    def capabilities() -> Capabilities:
        return service.capabilities()

    @app.post("/v1/recllm/logprobs")
    def logprobs(body: LogprobsRequest) -> ScoresResponse:
        return service.scores("logprobs", body.prompt, body.continuations)

    @app.post("/v1/recllm/logprobs_many")
    def logprobs_many(body: LogprobsManyRequest) -> ScoresManyResponse:
        return service.scores_many(body.jobs)

    @app.post("/v1/recllm/next_token_logprobs")
    def next_token_logprobs(body: NextTokenRequest) -> ScoresResponse:
        return service.scores("next_token_logprobs", body.prompt, body.tokens)

    @app.post("/v1/recllm/tokenize")
    def tokenize(body: TokenizeRequest) -> TokenizeResponse:
        counts = service.locked(lambda: [llm.count_tokens(t) for t in body.texts])
        return TokenizeResponse(model=service.name, token_counts=counts)

    @app.post("/v1/recllm/render_chat")
    def render_chat(body: RenderChatRequest) -> RenderChatResponse:
        messages = [m.as_dict() for m in body.messages]
        prompt = service.locked(lambda: llm.render_chat(messages, add_generation_prompt=body.add_generation_prompt))
        return RenderChatResponse(model=service.name, prompt=prompt)

    return app


def serve_llm(spec: str = "hf", host: str = "127.0.0.1", port: int = 8001, *, log_level: str = "info",
              default_max_tokens: int = 256, **options: Any) -> None:
    """Build the LLM ``create_llm(spec, **options)`` and serve it with uvicorn until interrupted.

    ``options`` go to the backend (e.g. ``device``, ``dtype``, ``num_threads`` for ``hf``). Binds to
    127.0.0.1 by default: the server has no authentication, so expose it beyond the machine with care.
    """
    import uvicorn

    from recllm.llm.factory import create_llm

    llm = create_llm(spec, **options)
    app = create_app(llm, default_max_tokens=default_max_tokens)
    log.info("serving %s (%s) at http://%s:%d/v1", llm.model_name, llm.backend, host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
