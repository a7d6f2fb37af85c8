"""Building a re-ranker by name: ``create_reranker("likelihood", llm, catalog, calibrate=False)``."""

from __future__ import annotations

from typing import Any

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
    ``options`` are its constructor's keyword arguments. A misspelt name or option is a ConfigError."""
    key = name.strip().lower()
    if key not in RERANKERS:
        raise ConfigError(f"unknown re-ranker '{name}'; available: {', '.join(RERANKERS)}")
    try:
        return RERANKERS[key](llm, catalog, **options)
    except TypeError as exc:
        raise ConfigError(f"re-ranker '{key}': {exc}") from exc
