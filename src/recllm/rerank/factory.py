"""Building a re-ranker by name: ``create_reranker("likelihood", llm, catalog, calibrate=False)``."""

from __future__ import annotations

from typing import Any

import pydantic

from recllm.data.catalog import ItemCatalog
from recllm.llm.base import LLM
from recllm.registry import Registry
from recllm.rerank.base import Reranker

OBJECT_OPTIONS = ("builder",)
"""Constructor arguments that are objects rather than configuration: passed through unvalidated."""

RERANKERS: Registry[type[Reranker]] = Registry("re-ranker", "recllm.rerankers",
                                               objects=("llm", "catalog", *OBJECT_OPTIONS))
"""Every re-ranker by name; a re-ranker is built as ``cls(llm, catalog, **options)``. Plugins: the
``recllm.rerankers`` entry-point group."""
RERANKERS.register("likelihood", "recllm.rerank.likelihood:LikelihoodReranker")
RERANKERS.register("verbalizer", "recllm.rerank.verbalizer:VerbalizerReranker")
RERANKERS.register("listwise", "recllm.rerank.listwise:ListwiseReranker")
RERANKERS.register("distilled", "recllm.rerank.distilled:DistilledReranker")


def reranker_names() -> list[str]:
    """Names ``create_reranker`` accepts."""
    return RERANKERS.names()


def reranker_needs_llm(name: str) -> bool:
    """Whether re-ranker ``name`` runs on a language model (False for a distilled student)."""
    return bool(getattr(RERANKERS.get_component(name), "needs_llm", True))


def create_reranker(name: str, llm: LLM | None, catalog: ItemCatalog, **options: Any) -> Reranker:
    """The re-ranker ``name`` ("likelihood", "verbalizer", "listwise" or a plugin) over ``llm`` and ``catalog``;
    ``options`` are its constructor's keyword arguments, validated by type (``calibrate="maybe"`` is an
    error, ``"false"`` from a command line is False). A misspelt name or option is a ConfigError."""
    objects = {k: options.pop(k) for k in OBJECT_OPTIONS if k in options}
    return RERANKERS.create(name, llm, catalog, options=options, **objects)


def reranker_config(name: str) -> type[pydantic.BaseModel]:
    """The pydantic model of re-ranker ``name``'s options (its constructor's keywords, types and defaults)."""
    return RERANKERS.options_model(name)
