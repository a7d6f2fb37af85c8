"""The LLM and Embedder contracts every backend implements, with request/response types and usage counters.

Public methods validate their input once here and delegate to the backend's ``_generate``, ``_logprobs`` and
``_next_token_logprobs``, so every backend rejects bad input the same way and counts its usage alike.
"""

from __future__ import annotations

import logging
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pydantic

from recllm.config import signature_model
from recllm.errors import RecllmError

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
FinishReason = Literal["stop", "length"]


class LLMError(RecllmError):
    """A language-model call could not be done as asked (bad input, label not one token, prompt too long).
    ``status``: the HTTP status a model server answered with, when that is what failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CapabilityError(LLMError):
    """The backend lacks a capability the call needs (scoring, JSON-schema output)."""


@dataclass(frozen=True)
class GenerationRequest:
    """One generation: chat ``messages`` (rendered with the model's chat template) or a raw ``prompt``.

    ``temperature=0`` is greedy decoding; above 0 the output is sampled, reproducibly when ``seed`` is set.
    ``stop`` strings end the output early and are not part of the returned text. ``json_schema`` asks for
    output constrained to that schema and needs a backend with ``can_schema``; ``grammar`` (a Lark grammar in
    llguidance's dialect, e.g. a choice of labels) needs one with ``can_grammar``. At most one of the two.
    """

    messages: tuple[dict[str, str], ...] | None = None
    prompt: str | None = None
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None
    seed: int | None = None
    grammar: str | None = None

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise LLMError("a generation request needs exactly one of 'messages' or 'prompt'")
        if self.json_schema is not None and self.grammar is not None:
            raise LLMError("a generation request takes a 'json_schema' or a 'grammar', not both")
        if self.grammar is not None and (not isinstance(self.grammar, str) or not self.grammar.strip()):
            raise LLMError(f"request 'grammar' must be a non-empty Lark grammar string, got {self.grammar!r}")
        if self.messages is not None:
            object.__setattr__(self, "messages", _normalise_messages(self.messages))
        elif not isinstance(self.prompt, str):
            raise LLMError(f"request 'prompt' must be a string, got {type(self.prompt).__name__}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise LLMError(f"request 'stop' must hold non-empty strings, got {self.stop!r}")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise LLMError(f"request 'max_new_tokens' must be a positive integer, got {self.max_new_tokens!r}")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise LLMError(f"request 'temperature' must be >= 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise LLMError(f"request 'top_p' must be in (0, 1], got {self.top_p!r}")

    @classmethod
    def chat(cls, messages: Sequence[Mapping[str, str]], **params: Any) -> GenerationRequest:
        """A chat request from ``[{"role": ..., "content": ...}, ...]``."""
        return cls(messages=tuple(dict(m) for m in messages), **params)

    @classmethod
    def text(cls, prompt: str, **params: Any) -> GenerationRequest:
        """A raw-text continuation request (no chat template)."""
        return cls(prompt=prompt, **params)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def deterministic(self) -> bool:
        """Whether the same request always gives the same output (greedy, or sampled with a seed)."""
        return self.greedy or self.seed is not None

    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready description of everything that determines the output (used as a cache key)."""
        return {
            "messages": list(self.messages) if self.messages is not None else None,
            "prompt": self.prompt,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": list(self.stop),
            "json_schema": self.json_schema,
            "seed": self.seed,
            **({"grammar": self.grammar} if self.grammar is not None else {}),
        }


def _normalise_messages(messages: Sequence[Mapping[str, str]]) -> tuple[dict[str, str], ...]:
    if isinstance(messages, str | bytes) or not messages:
        raise LLMError("request 'messages' must be a non-empty list of {'role', 'content'} mappings")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or set(message) != {"role", "content"}:
            raise LLMError(f"messages[{i}] must have exactly the keys 'role' and 'content', got {message!r}")
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise LLMError(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise LLMError(f"messages[{i}].content must be a string, got {type(content).__name__}")
        out.append({"role": role, "content": content})
    return tuple(out)


@dataclass(frozen=True)
class Completion:
    """The text a request produced, why it ended, and its token counts."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "finish_reason": self.finish_reason, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Completion:
        return cls(text=value["text"], finish_reason=value["finish_reason"],
                   prompt_tokens=int(value["prompt_tokens"]), completion_tokens=int(value["completion_tokens"]))


@dataclass
class Usage:
    """Running totals of model work, so diagnostics can report tokens per second; safe across threads."""

    generate_calls: int = 0
    score_calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    scored_tokens: int = 0
    generate_seconds: float = 0.0
    score_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record_generation(self, *, requests: int, prompt_tokens: int, generated_tokens: int, seconds: float) -> None:
        with self._lock:
            self.generate_calls += requests
            self.prompt_tokens += prompt_tokens
            self.generated_tokens += generated_tokens
            self.generate_seconds += seconds

    def record_scoring(self, *, prompt_tokens: int, scored_tokens: int, seconds: float) -> None:
        with self._lock:
            self.score_calls += 1
            self.prompt_tokens += prompt_tokens
            self.scored_tokens += scored_tokens
            self.score_seconds += seconds

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the lock (e.g. inside an LLM sent to a Ray worker); the copy gets a fresh one."""
        with self._lock:
            return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of generation time (0 before any generation)."""
        return self.generated_tokens / self.generate_seconds if self.generate_seconds > 0 else 0.0

    def reset(self) -> None:
        with self._lock:
            self.generate_calls = self.score_calls = 0
            self.prompt_tokens = self.generated_tokens = self.scored_tokens = 0
            self.generate_seconds = self.score_seconds = 0.0

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            return {
                "generate_calls": self.generate_calls, "score_calls": self.score_calls,
                "prompt_tokens": self.prompt_tokens, "generated_tokens": self.generated_tokens,
                "scored_tokens": self.scored_tokens, "generate_seconds": self.generate_seconds,
                "score_seconds": self.score_seconds, "tokens_per_second": self.tokens_per_second,
            }


class SpecBuilt:
    """A component built from a spec ``name[:target][,key=value...]``: which constructor argument the target
    fills, which arguments are objects rather than configuration, and the pydantic config of the rest."""

    target_argument: ClassVar[str | None] = None
    """The constructor argument that the target of a spec (``backend:TARGET``) fills, e.g. a path or a URL."""

    object_arguments: ClassVar[tuple[str, ...]] = ()
    """Constructor arguments that are objects (a transport, a client), not configuration."""

    @classmethod
    def config_model(cls) -> type[pydantic.BaseModel]:
        """The pydantic config of this backend's options: its constructor's keywords, the target excluded."""
        target = (cls.target_argument,) if cls.target_argument else ()
        constructor: Callable[..., Any] = cls
        return signature_model(constructor, frozenset((*target, *cls.object_arguments)))


class LLM(SpecBuilt, ABC):
    """A language model: generation, and (where ``can_score``) log-probabilities of given text.

    ``backend`` names the implementation ("hf", "openai", ...), ``model_name`` the model it runs; both go
    into cache keys and diagnostics. Log-probabilities are natural logarithms, returned as float64 arrays.
    """

    backend: str = "abstract"

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.usage = Usage()

    # ---- capabilities -----------------------------------------------------------------------------
    @property
    def can_score(self) -> bool:
        """Whether ``logprobs`` and ``next_token_logprobs`` are available."""
        return False

    @property
    def can_schema(self) -> bool:
        """Whether ``GenerationRequest.json_schema`` is honoured."""
        return False

    @property
    def can_grammar(self) -> bool:
        """Whether ``GenerationRequest.grammar`` is honoured."""
        return False

    @property
    def context_length(self) -> int | None:
        """Maximum number of tokens (prompt plus output) the model takes, when known."""
        return None

    @property
    def scores_prompts_jointly(self) -> bool:
        """Whether ``logprobs_many`` scores several prompts in one model pass (or one server request), so that
        gathering different users' prompts into one call pays; False where it only loops over the prompts."""
        return False

    @property
    def cache_identity(self) -> str:
        """What a response cache keys this model's answers by: the model, and whatever else changes its numbers
        (the ``hf`` backend adds a reduced precision), so two set-ups never read each other's scores."""
        return self.model_name

    def health(self, timeout: float = 3.0) -> str | None:
        """None when the model can answer now, else why not, checked within about ``timeout`` seconds. A model
        in this process is always ready once loaded; a server-backed one asks its server."""
        return None

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text``; this default is a rough estimate (4 characters a token)."""
        return max(1, math.ceil(len(text) / 4)) if text else 0

    def render_chat(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> str:
        """The prompt text the model sees for chat ``messages`` (to score continuations of a chat)."""
        raise CapabilityError(f"backend '{self.backend}' cannot render a chat as prompt text")

    # ---- public, validated entry points -----------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """One completion per request, in order."""
        requests = list(requests)
        for i, request in enumerate(requests):
            if not isinstance(request, GenerationRequest):
                raise LLMError(f"requests[{i}] must be a GenerationRequest, got {type(request).__name__}")
            if request.json_schema is not None and not self.can_schema:
                raise CapabilityError(f"backend '{self.backend}' ({self.model_name}) cannot constrain output to a "
                                      f"JSON schema (requests[{i}]); parse the text instead")
            if request.grammar is not None and not self.can_grammar:
                raise CapabilityError(f"backend '{self.backend}' ({self.model_name}) cannot constrain output to a "
                                      f"grammar (requests[{i}]); parse the text instead")
        if not requests:
            return []
        completions = self._generate(requests)
        if len(completions) != len(requests):
            raise LLMError(f"backend '{self.backend}' returned {len(completions)} completions for "
                           f"{len(requests)} requests")
        return completions

    def logprobs(self, prompt: str, continuations: Sequence[str]) -> np.ndarray:
        """Sum of the token log-probabilities of each continuation following ``prompt``; shape (len,)."""
        self._require_scoring("logprobs")
        continuations = _check_texts(continuations, "continuations", allow_empty_text=True)
        if not continuations:
            return np.zeros(0, dtype=np.float64)
        return self._check_scores(self._logprobs(_check_prompt(prompt), continuations), len(continuations))

    def logprobs_many(self, jobs: Sequence[tuple[str, Sequence[str]]]) -> list[np.ndarray]:
        """``logprobs(prompt, continuations)`` for each ``(prompt, continuations)`` job, in order: the same
        numbers, in one model pass where the backend ``scores_prompts_jointly`` (different users' re-rankings
        gathered by the service), else one call after another."""
        self._require_scoring("logprobs_many")
        if isinstance(jobs, str | bytes):
            raise LLMError("jobs must be a list of (prompt, continuations) pairs, not one string")
        checked: list[tuple[str, list[str]]] = []
        for i, job in enumerate(jobs):
            if not isinstance(job, tuple | list) or len(job) != 2:
                raise LLMError(f"jobs[{i}] must be a (prompt, continuations) pair, got {type(job).__name__}")
            prompt, continuations = job
            try:
                checked.append((_check_prompt(prompt), _check_texts(continuations, "continuations",
                                                                     allow_empty_text=True)))
            except LLMError as exc:
                raise LLMError(f"jobs[{i}]: {exc}") from exc
        busy = [(prompt, texts) for prompt, texts in checked if texts]
        scored = iter(self._logprobs_many(busy) if busy else [])
        return [self._check_scores(next(scored), len(texts)) if texts else np.zeros(0, dtype=np.float64)
                for _, texts in checked]

    def next_token_logprobs(self, prompt: str, tokens: Sequence[str]) -> np.ndarray:
        """Log-probability of each single-token label as the very next token after ``prompt``. Labels that share
        their leading tokens and differ in one last token (" 1".." 5" where the tokenizer keeps the space apart)
        are scored whole, as ``logprobs`` scores them."""
        self._require_scoring("next_token_logprobs")
        tokens = _check_texts(tokens, "tokens", allow_empty_text=False)
        if not tokens:
            return np.zeros(0, dtype=np.float64)
        return self._check_scores(self._next_token_logprobs(_check_prompt(prompt), tokens), len(tokens))

    # ---- backend hooks ----------------------------------------------------------------------------
    @abstractmethod
    def _generate(self, requests: list[GenerationRequest]) -> list[Completion]: ...

    def _logprobs(self, prompt: str, continuations: list[str]) -> np.ndarray:
        raise CapabilityError(f"backend '{self.backend}' cannot score continuations")

    def _logprobs_many(self, jobs: list[tuple[str, list[str]]]) -> list[np.ndarray]:
        """Every job's scores (each job has continuations); this default scores them one after another."""
        return [self._logprobs(prompt, continuations) for prompt, continuations in jobs]

    def _next_token_logprobs(self, prompt: str, tokens: list[str]) -> np.ndarray:
        raise CapabilityError(f"backend '{self.backend}' cannot score next tokens")

    def _require_scoring(self, method: str) -> None:
        if not self.can_score:
            raise CapabilityError(f"backend '{self.backend}' ({self.model_name}) does not offer {method}; "
                                  f"use generation, or a backend with can_score")

    def _check_scores(self, scores: np.ndarray, n: int) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (n,):
            raise LLMError(f"backend '{self.backend}' returned scores of shape {scores.shape}, expected ({n},)")
        return scores

    def __repr__(self) -> str:
        return f"{type(self).__name__}(backend={self.backend!r}, model={self.model_name!r})"


class LocalLLM(LLM):
    """A model run in this process with its own tokenizer (``hf``, ``llamacpp``): the scoring conventions they
    share. The prompt and each continuation are tokenised apart (no token merges across the boundary) and the
    prompt's trailing spaces move to the front of every continuation ("is " + "Paris" is scored as "is" +
    " Paris"), so both backends read the very same tokens."""

    @property
    def can_score(self) -> bool:
        """A model in this process gives its log-probabilities directly."""
        return True

    @abstractmethod
    def _encode_prompt(self, text: str) -> list[int]:
        """Prompt ids, with the model's start token unless the text has it."""

    @abstractmethod
    def _encode_piece(self, text: str) -> list[int]:
        """Ids of a continuation or label: no special tokens added."""

    def _token_names(self, ids: list[int]) -> list[str]:
        """How ``ids`` read, for error messages."""
        return [str(i) for i in ids]

    def _split_boundary(self, prompt: str) -> tuple[list[int], str]:
        """Prompt ids without trailing spaces, and those spaces (to put before every continuation)."""
        stripped = prompt.rstrip(" ")
        ids = self._encode_prompt(stripped)
        if not ids:
            raise LLMError("prompt has no tokens: scoring needs some context before the continuation")
        self._check_length(len(ids), "prompt")
        return ids, prompt[len(stripped):]

    def _check_length(self, n_tokens: int, what: str) -> None:
        limit = self.context_length
        if limit is not None and n_tokens > limit:
            raise LLMError(f"{what} has {n_tokens} tokens, more than the model's context of {limit}")

    def _label_ids(self, tokens: Sequence[str], spaces: str) -> list[int] | None:
        """The one token id of each label (after the prompt's trailing ``spaces``); None when every label is the
        same leading tokens plus one token of its own (a space the tokenizer keeps apart: SmolLM2 reads " 4" as
        " " + "4"), which the caller then scores whole; an LLMError naming a label that is neither."""
        encoded = [self._encode_piece(spaces + label) for label in tokens]
        if all(len(ids) == 1 for ids in encoded):
            return [ids[0] for ids in encoded]
        lead = encoded[0][:-1]
        if lead and all(len(ids) == len(lead) + 1 and ids[:-1] == lead for ids in encoded):
            return None
        i, ids = next((i, ids) for i, ids in enumerate(encoded) if len(ids) != 1)
        raise LLMError(f"label tokens[{i}] {tokens[i]!r} is {len(ids)} tokens for {self.model_name} "
                       f"({self._token_names(ids)}); next_token_logprobs needs single-token labels, or labels "
                       "that differ only in one last token after the same leading tokens")


def _check_prompt(prompt: str) -> str:
    if not isinstance(prompt, str):
        raise LLMError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise LLMError("prompt is empty: scoring needs some context before the continuation")
    return prompt


def _check_texts(texts: Sequence[str], name: str, *, allow_empty_text: bool) -> list[str]:
    if isinstance(texts, str):
        raise LLMError(f"{name} must be a list of strings, not one string")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise LLMError(f"{name}[{i}] must be a string, got {type(text).__name__}")
        if not allow_empty_text and not text:
            raise LLMError(f"{name}[{i}] is empty")
    return out


class Embedder(SpecBuilt, ABC):
    """Text to vectors: ``embed`` returns L2-normalised float32 rows, so a dot product is the cosine."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of each embedding vector."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``, shape (len(texts), dim), float32, each row of unit length."""
        texts = _check_texts(texts, "texts", allow_empty_text=True)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(self._embed(texts), dtype=np.float32)
        if vectors.shape != (len(texts), self.dim):
            raise LLMError(f"embedder {self.model_name} returned shape {vectors.shape}, "
                           f"expected ({len(texts)}, {self.dim})")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)

    @abstractmethod
    def _embed(self, texts: list[str]) -> np.ndarray: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model_name!r}, dim={self.dim})"
