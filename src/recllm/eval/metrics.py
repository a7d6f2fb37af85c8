"""Ranking and rating metrics. Ranks are 0-based and pessimistic on ties (see ``recllm.ranking``)."""

from __future__ import annotations

import numpy as np

from recllm.ranking import hit_from_ranks, ndcg_from_ranks, pessimistic_ranks, reciprocal_rank

__all__ = [
    "average_popularity", "catalog_coverage", "hit_from_ranks", "mae", "ndcg_from_ranks",
    "pessimistic_ranks", "reciprocal_rank", "rmse", "user_metrics",
]


def user_metrics(ranks: list[np.ndarray], k: int) -> dict[str, np.ndarray]:
    """Per-user HR@k, Recall@k, NDCG@k and MRR from each user's target ranks (one or more targets).

    With one target per user HR@k equals Recall@k and NDCG@k is 1/log2(rank+2) inside the top k.
    """
    hr, recall, ndcg, mrr = (np.zeros(len(ranks)) for _ in range(4))
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    for u, r in enumerate(ranks):
        r = np.asarray(r)
        hits = r < k
        hr[u] = float(hits.any())
        recall[u] = hits.sum() / len(r)
        ideal = discounts[: min(len(r), k)].sum()
        ndcg[u] = (1.0 / np.log2(r[hits] + 2.0)).sum() / ideal
        mrr[u] = 1.0 / (r.min() + 1.0)
    return {f"HR@{k}": hr, f"Recall@{k}": recall, f"NDCG@{k}": ndcg, "MRR": mrr}


def catalog_coverage(top_lists: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one top list."""
    return len(np.unique(top_lists)) / n_items if n_items else 0.0


def average_popularity(top_lists: np.ndarray, popularity: np.ndarray) -> float:
    """Mean training popularity (distinct users) of recommended items (ARP)."""
    return float(popularity[top_lists].mean()) if top_lists.size else 0.0


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted) - np.asarray(actual)) ** 2)))


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(predicted) - np.asarray(actual))))
