"""Building an LLM or Embedder from a short spec string such as ``"hf"`` or ``"hf:/models/my-model"``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recllm.errors import ConfigError
from recllm.llm.base import LLM, Embedder
from recllm.llm.cache import CachedLLM, CacheStore

LLM_BACKENDS = ("hf", "openai")
PLANNED_BACKENDS = ("llamacpp",)
EMBEDDER_BACKENDS = ("st",)


def _split(spec: str) -> tuple[str, str | None]:
    backend, sep, rest = spec.strip().partition(":")
    return backend.strip().lower(), (rest.strip() or None) if sep else None


def create_llm(spec: str = "hf", *, cache: bool | str | Path | CacheStore | None = None, **options: Any) -> LLM:
    """An LLM from ``spec``: ``"hf"`` (the pinned default model) or ``"hf:PATH_OR_ID"`` (folder, .gguf, hub id);
    ``"openai:URL"`` for any OpenAI-compatible server (options ``model``, ``api_key``, ``can_score``,
    ``can_schema``, ... as :class:`~recllm.llm.openai_backend.OpenAIBackend` takes them).

    ``cache`` wraps the model in a :class:`CachedLLM`: True for ``$RECLLM_HOME/cache/llm.sqlite``, or a path
    or :class:`ResponseCache`. ``options`` go to the backend's constructor (e.g. ``device``, ``dtype``).
    """
    backend, target = _split(spec)
    if backend == "hf":
        from recllm.llm.hf import HFBackend

        llm: LLM = HFBackend(target, **options)
    elif backend == "openai":
        from recllm.llm.openai_backend import OpenAIBackend

        if target is None:
            raise ConfigError(f"LLM spec '{spec}' needs the server's base URL, e.g. 'openai:http://127.0.0.1:8001/v1'")
        llm = OpenAIBackend(target, **options)
    elif backend in PLANNED_BACKENDS:
        raise ConfigError(f"LLM backend '{backend}' (spec '{spec}') is not available yet in this version of recllm; "
                          f"available: {', '.join(LLM_BACKENDS)}")
    else:
        raise ConfigError(f"unknown LLM backend '{backend}' in spec '{spec}'; available: {', '.join(LLM_BACKENDS)}")
    if cache is None or cache is False:
        return llm
    return CachedLLM(llm, None if cache is True else cache)


def create_embedder(spec: str = "st", **options: Any) -> Embedder:
    """An Embedder from ``spec``: ``"st"`` or ``"minilm"`` (pinned all-MiniLM-L6-v2), or ``"st:PATH_OR_ID"``."""
    backend, target = _split(spec)
    if backend in ("st", "minilm", "default"):
        from recllm.llm.embedder import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(target, **options)
    raise ConfigError(f"unknown embedder backend '{backend}' in spec '{spec}'; available: "
                      f"{', '.join(EMBEDDER_BACKENDS)}")
