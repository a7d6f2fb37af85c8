"""Behaviour injection inputs: a user's history from a Dataset, and few-shot demonstrations from similar users.

Demonstrations come from the most similar OTHER users (cosine over binary item vectors) of a Dataset that
must hold training interactions only: each shows part of that user's history and the item that really came
next, so nothing the caller holds out can reach a prompt through them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from recllm.data.dataset import Dataset
from recllm.errors import ConfigError
from recllm.prompts.prompt import HistoryEntry

log = logging.getLogger(__name__)


def user_history(dataset: Dataset, user: object, *, limit: int | None = None) -> list[HistoryEntry]:
    """The items of ``user`` (external id) in time order, with ratings when the dataset has them.

    ``limit`` keeps only the newest ``limit`` items. Raises UnknownIdError for a user not in the dataset.
    """
    index = dataset.user_vocab.index(user)
    start, stop = int(dataset.sequence_indptr[index]), int(dataset.sequence_indptr[index + 1])
    if limit is not None:
        start = max(start, stop - limit)
    rows = dataset.time_order[start:stop]
    items = dataset.item_vocab.lookup_ids(dataset.items[rows])
    if dataset.ratings is None:
        return [HistoryEntry(item) for item in items]
    return [HistoryEntry(item, float(r)) for item, r in zip(items, dataset.ratings[rows], strict=True)]


def as_history(history: Iterable[str | HistoryEntry | tuple[str, float | None]]) -> list[HistoryEntry]:
    """Normalise ids, ``(id, rating)`` pairs or entries to a list of ``HistoryEntry``."""
    out = []
    for entry in history:
        if isinstance(entry, HistoryEntry):
            out.append(entry)
        elif isinstance(entry, tuple):
            item, rating = entry
            out.append(HistoryEntry(str(item), None if rating is None else float(rating)))
        else:
            out.append(HistoryEntry(str(entry)))
    return out


@dataclass(frozen=True)
class Demonstration:
    """One few-shot example: part of another user's history and the item that came next for them."""

    user: str
    similarity: float
    history: tuple[HistoryEntry, ...]
    next: HistoryEntry


class FewShotSelector:
    """Picks demonstrations from the users of ``train`` most similar to a target user or history.

    ``train`` must hold training interactions only (never validation or test rows). Similarity is the cosine
    between binary item vectors; ties go to the lower user index, so selection is deterministic. Each
    demonstration shows up to ``history_length`` items before that user's last training item, which is the
    demonstration's answer.
    """

    def __init__(self, train: Dataset, *, history_length: int = 5, min_similarity: float = 0.0) -> None:
        if history_length < 1:
            raise ConfigError(f"few-shot history_length must be at least 1, got {history_length}")
        self.train = train
        self.history_length = history_length
        self.min_similarity = min_similarity
        matrix = train.matrix
        self._matrix = matrix
        self._norms = np.sqrt(np.asarray(matrix.getnnz(axis=1), dtype=np.float64))
        self._lengths = np.diff(train.sequence_indptr)

    def similarities(self, user: object | None = None, history: Sequence[str] | None = None) -> np.ndarray:
        """Cosine similarity of every training user to the target (the user's training row, plus ``history``)."""
        vector = np.zeros(self.train.n_items, dtype=np.float64)
        if user is not None and user in self.train.user_vocab:
            row = self._matrix[self.train.user_vocab.index(user)]
            vector[row.indices] = 1.0
        if history:
            known = self.train.item_vocab.indices(history, missing="skip")
            vector[known] = 1.0
        norm = float(np.sqrt(vector.sum()))
        if norm == 0:
            return np.zeros(self.train.n_users, dtype=np.float64)
        overlap = self._matrix @ vector
        with np.errstate(divide="ignore", invalid="ignore"):
            sims = np.where(self._norms > 0, overlap / (self._norms * norm), 0.0)
        return np.asarray(sims, dtype=np.float64)

    def select(self, n: int, *, user: object | None = None, history: Sequence[str] | None = None,
               exclude_users: Iterable[object] = ()) -> list[Demonstration]:
        """Up to ``n`` demonstrations from the most similar other users, most similar first.

        The target ``user`` (external id) and ``exclude_users`` are never chosen; users with fewer than two
        training items, or similarity not above ``min_similarity``, are skipped.
        """
        if n <= 0:
            return []
        if user is None and not history:
            raise ConfigError("few-shot selection needs the target user or their history")
        sims = self.similarities(user, history)
        eligible = (self._lengths >= 2) & (sims > self.min_similarity)
        for other in [user, *exclude_users]:
            if other is not None and other in self.train.user_vocab:
                eligible[self.train.user_vocab.index(other)] = False
        candidates = np.flatnonzero(eligible)
        order = candidates[np.lexsort((candidates, -sims[candidates]))][:n]
        if len(order) < n:
            log.debug("few-shot: %d of %d demonstrations found (similar users with 2+ items)", len(order), n)
        return [self._demonstration(int(u), float(sims[u])) for u in order]

    def _demonstration(self, index: int, similarity: float) -> Demonstration:
        user = self.train.user_vocab.id(index)
        entries = user_history(self.train, user, limit=self.history_length + 1)
        return Demonstration(user=user, similarity=similarity, history=tuple(entries[:-1]), next=entries[-1])
