"""Creating recommenders by name with validated hyper-parameters."""

from __future__ import annotations

from typing import Any

from recllm.errors import ConfigError
from recllm.models.base import MODEL_REGISTRY, Recommender


def _ensure_loaded() -> None:
    # SASRec and TIGER import torch; load them only when someone asks for them or lists models
    if "sasrec" not in MODEL_REGISTRY:
        import recllm.models.sasrec
    if "tiger" not in MODEL_REGISTRY:
        import recllm.train.tiger  # noqa: F401


def model_names() -> list[str]:
    _ensure_loaded()
    return list(MODEL_REGISTRY)


def create_model(name: str, params: dict[str, Any] | None = None) -> Recommender:
    """A fresh recommender of the registered ``name`` with ``params`` validated against its signature."""
    if name not in MODEL_REGISTRY:
        _ensure_loaded()
    cls = MODEL_REGISTRY.get(name)
    if cls is None:
        raise ConfigError(f"unknown model '{name}'; known: {', '.join(model_names())}")
    return cls.from_config(params)
