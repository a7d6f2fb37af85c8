"""Rank arithmetic shared by model early stopping and evaluation (pure numpy, no recllm imports).

Ties are broken pessimistically: a target is placed after every other item with the same score, so a
model that scores everything alike gets the worst possible rank rather than a lucky one.
"""

from __future__ import annotations

import numpy as np


def pessimistic_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of ``targets[b]`` within row ``scores[b]``; excluded items should hold -inf.

    rank = #items scoring higher + #other items scoring equal. A target whose own score is -inf or NaN
    (excluded or unscorable) gets rank n-1, the worst; any other NaN counts as scoring above the target.
    """
    rows = np.arange(scores.shape[0])
    target_scores = scores[rows, targets][:, None]
    higher = (scores > target_scores).sum(axis=1)
    equal = (scores == target_scores).sum(axis=1) - 1
    # NaN compares false with everything: a NaN elsewhere in the row counts as above the target
    higher += (np.isnan(scores).sum(axis=1) - np.isnan(target_scores[:, 0])).clip(min=0)
    ranks = higher + equal
    unscorable = np.isneginf(target_scores[:, 0]) | np.isnan(target_scores[:, 0])
    ranks[unscorable] = scores.shape[1] - 1
    return ranks.astype(np.int64)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores per row, best first; ties go to the lower item index.

    Entries scoring -inf are never returned ahead of finite ones; callers trim them if needed. NaN scores
    (an unscorable item) rank like -inf, last.
    """
    if np.isnan(scores).any():
        scores = np.where(np.isnan(scores), -np.inf, scores)
    n = scores.shape[1]
    k = min(k, n)
    if k <= 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    if k < n:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
        # argpartition breaks ties arbitrarily: re-select so equal scores go to the lower index
        out = np.empty((scores.shape[0], k), dtype=np.int64)
        for b in range(scores.shape[0]):
            better = np.flatnonzero(scores[b] > kth[b])
            tied = np.flatnonzero(scores[b] == kth[b])[: k - len(better)]
            chosen = np.concatenate([better, tied])
            order = np.lexsort((chosen, -scores[b, chosen]))
            out[b] = chosen[order]
        return out
    return np.lexsort((np.broadcast_to(np.arange(n), scores.shape), -scores), axis=1)


def ndcg_from_ranks(ranks: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k for one target per row: 1/log2(rank+2) inside the top k, else 0."""
    gains = 1.0 / np.log2(ranks.astype(np.float64) + 2.0)
    return np.where(ranks < k, gains, 0.0)


def hit_from_ranks(ranks: np.ndarray, k: int) -> np.ndarray:
    return (ranks < k).astype(np.float64)


def reciprocal_rank(ranks: np.ndarray) -> np.ndarray:
    return 1.0 / (ranks.astype(np.float64) + 1.0)
