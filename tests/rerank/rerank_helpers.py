"""Shared test helpers for the re-rankers: a tiny catalog of well-known movies and scripted fakes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fakes import MOVIES, ScriptedLLM
from recllm.data import ItemList
from recllm.rerank import Diagnostics, Reranker, RerankResult

__all__ = ["CANDIDATES", "HISTORY", "MOVIES", "PositionBiased", "Scripted", "ScriptedLLM", "itemlist"]

HISTORY = ["sw", "esb", "rotj"]
CANDIDATES = ["titanic", "godfather", "matrix", "lion", "jurassic", "fargo"]  # retriever order


def itemlist(ids: Sequence[str]) -> ItemList:
    """A retriever result: ``ids`` in order with strictly decreasing scores."""
    return ItemList(tuple(ids), np.linspace(1.0, 0.0, len(ids)) if len(ids) > 1 else np.ones(len(ids)))




class PositionBiased(Reranker):
    """A re-ranker that always prefers what it is shown first: it returns the input order unchanged."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, ...]] = []

    @property
    def name(self) -> str:
        return "position-biased"

    def rerank(self, history: Sequence[str], candidates: ItemList, *, user: object | None = None) -> RerankResult:
        self.shown.append(candidates.items)
        n = len(candidates)
        diagnostics = Diagnostics(reranker=self.name, model="none", backend="fake", n_candidates=n, latency_s=0.001,
                                  prompt_tokens=10, llm_calls=1)
        return RerankResult(ItemList(candidates.items, np.arange(n, 0, -1, dtype=float)), diagnostics, n)


class Scripted(Reranker):
    """A re-ranker returning scripted ``(order, n_ranked)`` results in turn, whatever it is shown."""

    def __init__(self, results: Sequence[tuple[Sequence[str], int]]) -> None:
        self.results = list(results)

    @property
    def name(self) -> str:
        return "scripted"

    def rerank(self, history: Sequence[str], candidates: ItemList, *, user: object | None = None) -> RerankResult:
        order, n_ranked = self.results.pop(0)
        assert set(order) == set(candidates.items)
        diagnostics = Diagnostics(reranker=self.name, model="none", backend="fake", n_candidates=len(order),
                                  missing_filled=len(order) - n_ranked, latency_s=0.001)
        return RerankResult(ItemList(tuple(order), np.arange(len(order), 0, -1, dtype=float)), diagnostics, n_ranked)
