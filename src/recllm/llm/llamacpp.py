"""The ``llamacpp`` backend: a GGUF file run as it is by llama.cpp (llama-cpp-python), with its quantised weights.

``llamacpp`` is the pinned default model's GGUF, ``llamacpp:gemma3-270m`` / ``llamacpp:qwen2.5-coder-0.5b`` the
larger pinned ones, ``llamacpp:PATH.gguf`` any other. No conversion to safetensors: the file is memory-mapped
and its 4-bit blocks are used directly, which is what makes llama.cpp fast on a CPU. Optional:
``pip install 'recllm[llamacpp]'`` (a source build of llama.cpp, some minutes once).

Scoring follows the ``hf`` backend's conventions exactly (see ``recllm.llm.hf``): the prompt and each
continuation are tokenised apart and trailing prompt spaces move to the front of every continuation. The
prompt runs once per call (kept for the next call with the very same prompt); each continuation is then one
decode on top of its key/value cache, reading the logits of its own tokens only.

Generation renders chat messages with the GGUF's own chat template (ChatML when it has none, as the ``hf``
conversion does) and runs llama.cpp's sampler: greedy at temperature 0, seeded otherwise. A JSON schema is
turned into a GBNF grammar, so ``can_schema`` is true; Lark grammars (``GenerationRequest.grammar``) need
llguidance, which this build of llama.cpp lacks, so ``can_grammar`` is false and such requests are refused.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from recllm.config import checked
from recllm.errors import ConfigError
from recllm.llm.base import Completion, FinishReason, GenerationRequest, LLMError, LocalLLM
from recllm.llm.resolve import CHATML_TEMPLATE, resolve_gguf

log = logging.getLogger(__name__)

KV_TYPES = {"f32": 0, "f16": 1, "q8_0": 8}
"""ggml type numbers of the key/value cache types offered."""
DEFAULT_CONTEXT = 4096
"""Tokens of context allocated unless ``n_ctx`` says otherwise (less when the model was trained on less)."""


def _require_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ConfigError("the llamacpp backend needs llama-cpp-python: pip install 'recllm[llamacpp]' (it builds "
                          "llama.cpp from source once, a few minutes)") from exc
    return llama_cpp


def _default_threads() -> int:
    """``OMP_NUM_THREADS`` when set to a positive number (the share of cores a process was given), else every core:
    llama.cpp's threads spin while they wait, so more threads than cores slows everything."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else os.cpu_count() or 1


class LlamaCppBackend(LocalLLM):
    """A GGUF model run by llama.cpp on the CPU. ``model``: None (the pinned default), a pinned name or a path.

    ``n_ctx`` is the context window allocated (default: the model's training context, at most 4096 tokens);
    ``threads`` the CPU threads (default: ``OMP_NUM_THREADS`` where set, as by ``recllm serve --workers N`` and
    Ray, else every core; llama-cpp-python's own default is half of them).
    ``kv_cache`` is the type of the key/value cache: float32 by default, because llama.cpp's usual float16
    cache moved a 12-token title's log-probability by 1.5 nats on the default model (-20.27 against -18.74;
    the ``hf`` backend's float32: -18.26); ``f16`` or ``q8_0`` halve or quarter its memory.
    """

    target_argument = "model"

    backend = "llamacpp"

    @checked()
    def __init__(self, model: str | Path | None = None, *, n_ctx: Annotated[int, Field(ge=16)] | None = None,
                 threads: Annotated[int, Field(ge=1)] | None = None, n_batch: Annotated[int, Field(ge=1)] = 512,
                 kv_cache: Literal["f32", "f16", "q8_0"] = "f32", seed: int = 0) -> None:
        llama_cpp = _require_llama_cpp()
        path, name = resolve_gguf(model)
        super().__init__(name)
        self.path = path
        self.threads = threads or _default_threads()
        start = time.perf_counter()

        def load(context: int) -> Any:
            try:
                return llama_cpp.Llama(str(path), n_ctx=context, n_batch=n_batch, n_ubatch=n_batch,
                                       n_threads=self.threads, n_threads_batch=self.threads, seed=seed,
                                       type_k=KV_TYPES[kv_cache], type_v=KV_TYPES[kv_cache], logits_all=False,
                                       verbose=False)
            except (ValueError, RuntimeError, OSError) as exc:
                raise ConfigError(f"llama.cpp could not load {path}: {exc}") from exc

        self._llm = load(n_ctx or DEFAULT_CONTEXT)
        architecture = self._llm.metadata.get("general.architecture", "")
        trained = int(self._llm.metadata.get(f"{architecture}.context_length") or 0)
        if n_ctx is None and 0 < trained < DEFAULT_CONTEXT:  # a short-context model: no cache beyond it
            self._llm = load(trained)
        self._lock = threading.RLock()
        self._prompt_row: tuple[tuple[int, ...], np.ndarray] | None = None
        self._n_vocab = int(self._llm.n_vocab())
        self._template = str(self._llm.metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE)
        self._bos = self._token_text(self._llm.token_bos())
        self._eos = self._token_text(self._llm.token_eos())
        self.load_seconds = time.perf_counter() - start
        log.info("loaded %s with llama.cpp (%d threads, context %d) in %.2f s", name, self.threads,
                 self._llm.n_ctx(), self.load_seconds)

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("a llama.cpp model cannot be pickled; send its spec (e.g. 'llamacpp') instead")

    # ---- capabilities and helpers -----------------------------------------------------------------
    @property
    def can_schema(self) -> bool:
        return True

    @property
    def context_length(self) -> int | None:
        return int(self._llm.n_ctx())

    def count_tokens(self, text: str) -> int:
        return len(self._encode_prompt(text)) if text else 0

    def render_chat(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> str:
        """The prompt text for ``messages`` by the GGUF's chat template (ChatML when it carries none)."""
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        request = GenerationRequest.chat(messages)  # validates roles and contents
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

        def raise_exception(message: str) -> None:
            raise LLMError(f"the chat template of {self.model_name} refused the messages: {message}")

        template = environment.from_string(self._template)
        return template.render(messages=list(request.messages or ()), add_generation_prompt=add_generation_prompt,
                               bos_token=self._bos, eos_token=self._eos, raise_exception=raise_exception)

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _encode_prompt(self, text: str) -> list[int]:
        """Prompt ids: the model's start token added unless the text has it; special-token markers parsed (as
        the ``hf`` tokenizer does)."""
        add = not (self._bos and text.startswith(self._bos))
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=add, special=True))

    def _encode_piece(self, text: str) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    # ---- the key/value cache ----------------------------------------------------------------------
    def _decode(self, tokens: list[int], n_past: int, *, every_row: bool) -> np.ndarray:
        """Run ``tokens`` at positions ``n_past``...; the log-softmax of the logits after each token
        (``every_row``) or after the last one only. Whatever the cache held from ``n_past`` on is dropped."""
        llm = self._llm
        llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
        rows: list[np.ndarray] = []
        for i in range(0, len(tokens), llm.n_batch):
            chunk = tokens[i:i + llm.n_batch]
            llm._batch.set_batch(batch=chunk, n_past=n_past, logits_all=every_row)
            llm._ctx.decode(llm._batch)
            count = len(chunk) if every_row else 1
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(count * self._n_vocab,))
            block = logits.reshape(count, self._n_vocab).astype(np.float64)
            if every_row or i + llm.n_batch >= len(tokens):
                rows.append(block)
            llm.input_ids[n_past:n_past + len(chunk)] = chunk
            n_past += len(chunk)
        llm.n_tokens = n_past
        out = np.concatenate(rows)
        return out - np.logaddexp.reduce(out, axis=1, keepdims=True)

    def _prefill(self, ids: list[int]) -> np.ndarray:
        """Log-probabilities of the token after ``ids``: read from the last call when it had the same prompt,
        else the whole prompt runs afresh as one batch.

        A cached prompt start is not extended: llama.cpp computes a token run alone (a matrix-vector product)
        a little differently from the same token in a batch, so a partly reused prompt would give scores that
        depend on what ran before (up to 2 nats on a 12-token title, measured). Scores here depend only on
        the prompt and the continuation."""
        if self._prompt_row is not None and self._prompt_row[0] == tuple(ids):
            return self._prompt_row[1]
        self._prompt_row = None
        row = self._decode(ids, 0, every_row=False)[-1]
        self._prompt_row = (tuple(ids), row)
        return row

    # ---- scoring ----------------------------------------------------------------------------------
    def _logprobs(self, prompt: str, continuations: list[str]) -> np.ndarray:
        start = time.perf_counter()
        with self._lock:
            prompt_ids, spaces = self._split_boundary(prompt)
            conts = [self._encode_piece(spaces + c) if (spaces + c) else [] for c in continuations]
            self._check_length(len(prompt_ids) + max(len(c) for c in conts), "prompt plus longest continuation")
            scores = np.zeros(len(conts), dtype=np.float64)
            if any(conts):
                first = self._prefill(prompt_ids)
                for i, cont in enumerate(conts):
                    if not cont:
                        continue
                    total = float(first[cont[0]])
                    if len(cont) > 1:
                        rows = self._decode(cont[:-1], len(prompt_ids), every_row=True)
                        total += float(rows[np.arange(len(cont) - 1), cont[1:]].sum())
                    scores[i] = total
                self._llm.n_tokens = len(prompt_ids)  # the prompt stays cached for the next call
        self.usage.record_scoring(prompt_tokens=len(prompt_ids), scored_tokens=sum(len(c) for c in conts),
                                  seconds=time.perf_counter() - start)
        return scores

    def _next_token_logprobs(self, prompt: str, tokens: list[str]) -> np.ndarray:
        start = time.perf_counter()
        with self._lock:
            prompt_ids, spaces = self._split_boundary(prompt)
            label_ids = self._label_ids(tokens, spaces)
            if label_ids is None:
                return self._logprobs(prompt, tokens)
            logp = self._prefill(prompt_ids)
        self.usage.record_scoring(prompt_tokens=len(prompt_ids), scored_tokens=len(tokens),
                                  seconds=time.perf_counter() - start)
        return logp[label_ids]

    # ---- generation -------------------------------------------------------------------------------
    def _generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        return [self._generate_one(r) for r in requests]

    def _generate_one(self, request: GenerationRequest) -> Completion:
        llama_cpp = _require_llama_cpp()
        text = self.render_chat(request.messages) if request.messages is not None else request.prompt or ""
        start = time.perf_counter()
        with self._lock:
            ids = self._encode_prompt(text)
            self._check_length(len(ids) + request.max_new_tokens, "prompt plus max_new_tokens")
            grammar = None
            if request.json_schema is not None:
                grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(request.json_schema), verbose=False)
            self._prompt_row = None  # generation rewrites the cache its own way
            out = self._llm.create_completion(
                ids, max_tokens=request.max_new_tokens, temperature=request.temperature, top_p=request.top_p,
                top_k=0, min_p=0.0, repeat_penalty=1.0, stop=list(request.stop) or None, grammar=grammar,
                seed=request.seed if request.seed is not None else 0)
        choice = out["choices"][0]
        finish: FinishReason = "length" if choice.get("finish_reason") == "length" else "stop"
        usage = out.get("usage") or {}
        completion = Completion(text=str(choice["text"]), finish_reason=finish,
                                prompt_tokens=int(usage.get("prompt_tokens", len(ids))),
                                completion_tokens=int(usage.get("completion_tokens", 0)))
        self.usage.record_generation(requests=1, prompt_tokens=completion.prompt_tokens,
                                     generated_tokens=completion.completion_tokens,
                                     seconds=time.perf_counter() - start)
        return completion

    def __repr__(self) -> str:
        return f"LlamaCppBackend(model={self.model_name!r}, path={str(self.path)!r})"
