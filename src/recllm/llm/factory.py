"""Building an LLM or Embedder from a spec string such as ``"hf"``, ``"hf:/models/my-model"`` or
``"openai:http://127.0.0.1:8001/v1,model=smol,can_score=true"`` (``backend[:target][,key=value...]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recllm.errors import ConfigError
from recllm.llm.base import LLM, Embedder
from recllm.llm.cache import CachedLLM, CacheStore
from recllm.registry import Registry, parse_spec

LLM_BACKENDS: Registry[type[LLM]] = Registry("LLM backend", "recllm.llm_backends")
"""LLM backends by name; a backend is built as ``cls(target, **options)`` (``target_argument`` names the
constructor argument the target fills). Plugins: the ``recllm.llm_backends`` entry-point group."""
LLM_BACKENDS.register("hf", "recllm.llm.hf:HFBackend")
LLM_BACKENDS.register("openai", "recllm.llm.openai_backend:OpenAIBackend")
LLM_BACKENDS.register("llamacpp", "recllm.llm.llamacpp:LlamaCppBackend")

EMBEDDERS: Registry[type[Embedder]] = Registry("embedder", "recllm.embedders")
"""Sentence embedders by name (plugins: the ``recllm.embedders`` entry-point group)."""
EMBEDDERS.register("st", "recllm.llm.embedder:SentenceTransformerEmbedder", aliases=("minilm", "default"))
EMBEDDERS.register("lm", "recllm.llm.lm_embedder:LMEmbedder")

PLANNED_BACKENDS: tuple[str, ...] = ()
REQUIRES_TARGET = {"openai": "the server's base URL, e.g. 'openai:http://127.0.0.1:8001/v1'"}


def _build(registry: Registry[Any], spec: str, what: str, options: dict[str, Any]) -> Any:
    backend, target, spec_options = parse_spec(spec, kind=f"{what} spec")
    if backend in PLANNED_BACKENDS and backend not in registry:
        raise ConfigError(f"LLM backend '{backend}' (spec '{spec}') is not available yet in this version of recllm; "
                          f"available: {', '.join(registry.names())}")
    try:
        cls = registry.get_component(backend)
    except ConfigError:
        raise ConfigError(f"unknown {registry.kind} '{backend}' in spec '{spec}'; available: "
                          f"{', '.join(registry.names())}") from None
    if target is None and backend in REQUIRES_TARGET:
        raise ConfigError(f"{what} spec '{spec}' needs {REQUIRES_TARGET[backend]}")
    validated = registry.validate(backend, {**spec_options, **options})
    if target is not None and cls.target_argument is None:
        raise ConfigError(f"{what} spec '{spec}': the {registry.kind} '{backend}' takes no target after ':'")
    return cls(target, **validated) if cls.target_argument else cls(**validated)


def create_llm(spec: str = "hf", *, cache: bool | str | Path | CacheStore | None = None, **options: Any) -> LLM:
    """An LLM from ``spec``: ``"hf"`` (the pinned default model) or ``"hf:PATH_OR_ID"`` (folder, .gguf, hub id);
    ``"openai:URL"`` for any OpenAI-compatible server. Options may follow the spec after commas
    (``"openai:URL,model=smol,can_score=true"``) or come as keyword arguments; both are validated against the
    backend's constructor (``recllm.llm.hf.HFBackend``, ``recllm.llm.openai_backend.OpenAIBackend``).

    ``cache`` wraps the model in a ``CachedLLM``: True for ``$RECLLM_HOME/cache/llm.sqlite``, or a path
    or ``ResponseCache``.
    """
    llm: LLM = _build(LLM_BACKENDS, spec, "LLM", options)
    if cache is None or cache is False:
        return llm
    return CachedLLM(llm, None if cache is True else cache)


def create_embedder(spec: str = "st", **options: Any) -> Embedder:
    """An Embedder from ``spec``: ``"st"`` or ``"minilm"`` (pinned all-MiniLM-L6-v2), ``"st:PATH_OR_ID"``, or
    ``"lm"`` / ``"lm:PATH"`` (mean hidden states of a causal language model, the pinned default or a folder)."""
    embedder: Embedder = _build(EMBEDDERS, spec, "embedder", options)
    return embedder
