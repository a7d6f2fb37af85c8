"""Batch recommendation: the top k of every user of a fitted model, computed in shards of users (one after
another here, or as Ray tasks: ``recllm.distributed``) and written to Parquet as one row per user and rank.
Items in a user's training history are never recommended to them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from recllm.distributed import map_shards
from recllm.errors import ConfigError
from recllm.eval.protocols import masked_scores
from recllm.models.base import Recommender
from recllm.ranking import top_k

BATCH_USERS = 256
"""Users scored together in one call to the model (bounds memory: users × items floats)."""


def recommend_shard(users: np.ndarray, model: Recommender, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(item indices, scores), each (len(users), k), for user indices ``users``; seen items excluded. A user
    with fewer than k unseen items gets -1 / -inf in the places left."""
    items = np.full((len(users), k), -1, dtype=np.int64)
    scores = np.full((len(users), k), -np.inf, dtype=np.float64)
    for start in range(0, len(users), BATCH_USERS):
        batch = users[start:start + BATCH_USERS]
        block = masked_scores(model, batch, [model.history_of(int(u)) for u in batch])
        best = top_k(block, k)
        chosen = np.take_along_axis(block, best, axis=1)
        keep = np.isfinite(chosen)
        rows = slice(start, start + len(batch))
        items[rows] = np.where(keep, best, -1)
        scores[rows] = np.where(keep, chosen, -np.inf)
    return items, scores


def batch_recommend(model: Recommender, k: int, *, users: Sequence[int] | None = None, shards: int = 1,
                    ray: ModuleType | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user indices, item indices (n, k), scores (n, k)) for ``users`` (all the model's users by default),
    split into ``shards`` contiguous shards; the same numbers with or without ``ray``."""
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    if shards < 1:
        raise ConfigError(f"shards must be at least 1, got {shards}")
    if model.user_vocab is None:
        raise ConfigError("the model is not fitted")
    chosen = np.arange(len(model.user_vocab)) if users is None else np.asarray(users, dtype=np.int64)
    parts = [p for p in np.array_split(chosen, min(shards, max(1, len(chosen)))) if len(p)]
    results = map_shards(recommend_shard, parts, shared=(model, k), ray=ray)
    if not results:
        return chosen, np.zeros((0, k), dtype=np.int64), np.zeros((0, k))
    return chosen, np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])


def write_parquet(path: str | Path, model: Recommender, users: np.ndarray, items: np.ndarray,
                  scores: np.ndarray) -> int:
    """Rows (user, rank, item, score), rank from 1, places without an item left out; returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert model.user_vocab is not None and model.item_vocab is not None
    filled = items >= 0
    user_rows = np.repeat(np.arange(len(users)), filled.sum(axis=1))
    ranks = (np.cumsum(filled, axis=1) * filled)[filled]
    user_ids = np.asarray(model.user_vocab.ids, dtype=object)[users][user_rows]
    item_ids = np.asarray(model.item_vocab.ids, dtype=object)[items[filled]]
    table = pa.table({"user": pa.array(user_ids.astype(str)), "rank": pa.array(ranks.astype(np.int32)),
                      "item": pa.array(item_ids.astype(str)), "score": pa.array(scores[filled].astype(np.float64))})
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return table.num_rows
