"""Building a re-ranker by name: ``create_reranker("likelihood", llm, catalog, calibrate=False)``."""

from __future__ import annotations

from typing import Any

import pydantic

from recllm.config import build, signature_model
from recllm.data.catalog import ItemCatalog
from recllm.errors import ConfigError
from recllm.llm.base import LLM
from recllm.rerank.base import Reranker
from recllm.rerank.likelihood import LikelihoodReranker
from recllm.rerank.listwise import ListwiseReranker
from recllm.rerank.verbalizer import VerbalizerReranker

RERANKERS: dict[str, type[LikelihoodReranker] | type[VerbalizerReranker] | type[ListwiseReranker]] = {
    "likelihood": LikelihoodReranker,
    "verbalizer": VerbalizerReranker,
    "listwise": ListwiseReranker,
}


def reranker_names() -> list[str]:
    """Names ``create_reranker`` accepts."""
    return list(RERANKERS)


def create_reranker(name: str, llm: LLM, catalog: ItemCatalog, **options: Any) -> Reranker:
    """The re-ranker ``name`` ("likelihood", "verbalizer", "listwise") over ``llm`` and ``catalog``;
    ``options`` are its constructor's keyword arguments, validated by type (``calibrate="maybe"`` is an
    error, ``"false"`` from a command line is False). A misspelt name or option is a ConfigError."""
    key = name.strip().lower()
    if key not in RERANKERS:
        raise ConfigError(f"unknown re-ranker '{name}'; available: {', '.join(RERANKERS)}")
    cls = RERANKERS[key]
    objects = {k: options.pop(k) for k in OBJECT_OPTIONS if k in options}
    config = build(reranker_config(key), options, where=f"re-ranker '{key}'")
    return cls(llm, catalog, **config.model_dump(exclude_unset=True), **objects)


OBJECT_OPTIONS = ("builder",)
"""Constructor arguments that are objects rather than configuration: passed through unvalidated."""


def reranker_config(name: str) -> type[pydantic.BaseModel]:
    """The pydantic model of re-ranker ``name``'s options (its constructor's keywords, types and defaults)."""
    return signature_model(RERANKERS[name], frozenset({"llm", "catalog", *OBJECT_OPTIONS}))
