"""LLM and Embedder backends, model artifact resolution and the response cache."""

from recllm.llm.base import (
    LLM,
    CapabilityError,
    Completion,
    Embedder,
    GenerationRequest,
    LLMError,
    Usage,
)
from recllm.llm.cache import CachedLLM, ResponseCache, cache_key, default_cache_path
from recllm.llm.factory import EMBEDDERS, LLM_BACKENDS, create_embedder, create_llm
from recllm.llm.resolve import (
    DEFAULT_EMBEDDER_NAME,
    DEFAULT_LLM_NAME,
    MINILM_PACKAGE,
    SMOLLM2_PACKAGE,
    ResolvedModel,
    default_llm_dir,
    resolve_embedder,
    resolve_llm,
)

__all__ = [
    "DEFAULT_EMBEDDER_NAME",
    "DEFAULT_LLM_NAME",
    "EMBEDDERS",
    "LLM",
    "LLM_BACKENDS",
    "MINILM_PACKAGE",
    "SMOLLM2_PACKAGE",
    "CachedLLM",
    "CapabilityError",
    "Completion",
    "Embedder",
    "GenerationRequest",
    "HFBackend",
    "LLMError",
    "ResolvedModel",
    "ResponseCache",
    "SentenceTransformerEmbedder",
    "Usage",
    "cache_key",
    "create_embedder",
    "create_llm",
    "default_cache_path",
    "default_llm_dir",
    "resolve_embedder",
    "resolve_llm",
]


def __getattr__(name: str) -> object:
    """HFBackend and SentenceTransformerEmbedder import torch/transformers; load them only when asked for."""
    if name == "HFBackend":
        from recllm.llm.hf import HFBackend

        return HFBackend
    if name == "SentenceTransformerEmbedder":
        from recllm.llm.embedder import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder
    raise AttributeError(f"module 'recllm.llm' has no attribute {name!r}")
