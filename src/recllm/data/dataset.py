"""Dataset: interactions (user, item, rating?, timestamp?) over fixed user and item vocabularies."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recllm.data.vocabulary import Vocabulary
from recllm.errors import DataError

log = logging.getLogger(__name__)


def _frozen(array: np.ndarray | None, dtype: type) -> np.ndarray | None:
    if array is None:
        return None
    out: np.ndarray = np.ascontiguousarray(array, dtype=dtype)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class Dataset:
    """Immutable interaction log with dense indices into ``user_vocab`` and ``item_vocab``.

    Rows keep the order of the source file; ``sequences`` orders each user's items by timestamp with a
    stable sort, so equal timestamps keep file order and splits are reproducible across toolkits.
    Splits share the vocabularies of the dataset they come from, so indices stay comparable.
    """

    users: np.ndarray
    items: np.ndarray
    user_vocab: Vocabulary
    item_vocab: Vocabulary
    ratings: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    user_attributes: pd.DataFrame | None = field(default=None, repr=False)
    name: str = "dataset"

    def __post_init__(self) -> None:
        object.__setattr__(self, "users", _frozen(self.users, np.int32))
        object.__setattr__(self, "items", _frozen(self.items, np.int32))
        object.__setattr__(self, "ratings", _frozen(self.ratings, np.float32))
        object.__setattr__(self, "timestamps", _frozen(self.timestamps, np.int64))
        n = len(self.users)
        for label, arr in (("items", self.items), ("ratings", self.ratings), ("timestamps", self.timestamps)):
            if arr is not None and len(arr) != n:
                raise DataError(f"{label} has {len(arr)} rows but users has {n}", field=label)
        if n:
            if self.users.min() < 0 or self.users.max() >= len(self.user_vocab):
                raise DataError("user index outside the user vocabulary", field="user")
            if self.items.min() < 0 or self.items.max() >= len(self.item_vocab):
                raise DataError("item index outside the item vocabulary", field="item")

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_ids(
        cls,
        users: list[object] | np.ndarray | pd.Series,
        items: list[object] | np.ndarray | pd.Series,
        *,
        ratings: np.ndarray | list[float] | None = None,
        timestamps: np.ndarray | list[int] | None = None,
        user_vocab: Vocabulary | None = None,
        item_vocab: Vocabulary | None = None,
        user_attributes: pd.DataFrame | None = None,
        name: str = "dataset",
    ) -> Dataset:
        """Build from external ids; vocabularies are made in first-seen order unless given."""
        user_codes, user_vocab = _encode(users, user_vocab, "user")
        item_codes, item_vocab = _encode(items, item_vocab, "item")
        attrs = None
        if user_attributes is not None:
            attrs = _align_attributes(user_attributes, user_vocab)
        return cls(
            users=user_codes,
            items=item_codes,
            user_vocab=user_vocab,
            item_vocab=item_vocab,
            ratings=None if ratings is None else np.asarray(ratings, dtype=np.float32),
            timestamps=None if timestamps is None else np.asarray(timestamps, dtype=np.int64),
            user_attributes=attrs,
            name=name,
        )

    # ---- sizes --------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.user_vocab)

    @property
    def n_items(self) -> int:
        return len(self.item_vocab)

    def __len__(self) -> int:
        return len(self.users)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, users={self.n_users}, items={self.n_items}, "
                f"interactions={len(self)})")

    # ---- derived views (computed once) --------------------------------------------------------
    @cached_property
    def time_order(self) -> np.ndarray:
        """Row order by (user, timestamp, file position): the order every sequence uses."""
        position = np.arange(len(self), dtype=np.int64)
        keys = (position,) if self.timestamps is None else (position, self.timestamps)
        order = np.lexsort((*keys, self.users))
        order.flags.writeable = False
        return order

    @cached_property
    def sequence_indptr(self) -> np.ndarray:
        """Offsets into ``sequence_items``: user u's items are ``[indptr[u], indptr[u+1])``."""
        counts = np.bincount(self.users, minlength=self.n_users)
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        indptr.flags.writeable = False
        return indptr

    @cached_property
    def sequence_items(self) -> np.ndarray:
        items = self.items[self.time_order]
        items.flags.writeable = False
        return items

    def sequence(self, user: int) -> np.ndarray:
        """Item indices of one user (by index) in time order."""
        return self.sequence_items[self.sequence_indptr[user]:self.sequence_indptr[user + 1]]

    def sequences(self) -> list[np.ndarray]:
        return [self.sequence(u) for u in range(self.n_users)]

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """Binary user x item CSR matrix (repeat interactions count once)."""
        data = np.ones(len(self), dtype=np.float32)
        mat = sp.csr_matrix((data, (self.users, self.items)), shape=(self.n_users, self.n_items))
        mat.sum_duplicates()
        mat.data[:] = 1.0
        return mat

    @cached_property
    def item_popularity(self) -> np.ndarray:
        """Number of distinct users per item."""
        pop = np.asarray(self.matrix.sum(axis=0)).ravel().astype(np.int64)
        pop.flags.writeable = False
        return pop

    @cached_property
    def active_users(self) -> np.ndarray:
        """Indices of users with at least one interaction."""
        return np.flatnonzero(np.diff(self.sequence_indptr) > 0)

    # ---- derivations --------------------------------------------------------------------------
    def take(self, rows: np.ndarray, name: str | None = None) -> Dataset:
        """A dataset with the given rows (indices or boolean mask), same vocabularies."""
        return Dataset(
            users=self.users[rows],
            items=self.items[rows],
            user_vocab=self.user_vocab,
            item_vocab=self.item_vocab,
            ratings=None if self.ratings is None else self.ratings[rows],
            timestamps=None if self.timestamps is None else self.timestamps[rows],
            user_attributes=self.user_attributes,
            name=name or self.name,
        )

    def to_frame(self) -> pd.DataFrame:
        """Interactions with external ids, in source order."""
        frame = pd.DataFrame({
            "user": np.asarray(self.user_vocab.ids, dtype=object)[self.users],
            "item": np.asarray(self.item_vocab.ids, dtype=object)[self.items],
        })
        if self.ratings is not None:
            frame["rating"] = self.ratings
        if self.timestamps is not None:
            frame["timestamp"] = self.timestamps
        return frame


def _encode(values: object, vocab: Vocabulary | None, kind: str) -> tuple[np.ndarray, Vocabulary]:
    series = pd.Series(values, dtype=object).astype(str)
    if vocab is None:
        codes, uniques = pd.factorize(series, sort=False)
        return codes.astype(np.int32), Vocabulary(uniques, kind=kind)
    codes = vocab.indices(series.tolist())
    return codes.astype(np.int32), vocab


def _align_attributes(frame: pd.DataFrame, vocab: Vocabulary) -> pd.DataFrame:
    """Reindex a frame keyed by external user id to vocabulary order (missing users get NaN)."""
    frame = frame.copy()
    frame.index = frame.index.astype(str)
    extra = frame.index.difference(pd.Index(vocab.ids))
    if len(extra):
        log.info("user attributes: %d users have no interactions and are left out", len(extra))
    return frame.reindex(list(vocab.ids))
