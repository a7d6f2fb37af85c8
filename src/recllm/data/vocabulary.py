"""Vocabulary: the two-way map between external ids (strings) and dense integer indices."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from recllm.errors import DataError, UnknownIdError


class Vocabulary:
    """Immutable map external id <-> index 0..n-1, in first-seen order.

    External ids are strings; integers given by callers are converted with ``str``, so ``42`` and
    ``"42"`` name the same user. Only recllm's internals see the indices.
    """

    __slots__ = ("_ids", "_index", "kind")

    def __init__(self, ids: Iterable[object], kind: str = "id") -> None:
        self.kind = kind
        self._ids: tuple[str, ...] = tuple(str(i) for i in ids)
        self._index: dict[str, int] = {}
        for position, ext in enumerate(self._ids):
            if ext in self._index:
                raise DataError(f"duplicate {kind} id '{ext}' in vocabulary (positions "
                                f"{self._index[ext]} and {position})")
            self._index[ext] = position

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __contains__(self, ext: object) -> bool:
        return str(ext) in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._ids == other._ids

    def __hash__(self) -> int:
        return hash(self._ids)

    def __repr__(self) -> str:
        return f"Vocabulary({self.kind}, n={len(self)})"

    @property
    def ids(self) -> tuple[str, ...]:
        return self._ids

    def index(self, ext: object) -> int:
        """Index of one external id; raises UnknownIdError naming the id."""
        try:
            return self._index[str(ext)]
        except KeyError:
            raise UnknownIdError(f"unknown {self.kind} id '{ext}'") from None

    def get(self, ext: object, default: int = -1) -> int:
        index: int = self._index.get(str(ext), default)
        return index

    def indices(self, exts: Iterable[object], *, missing: str = "error") -> np.ndarray:
        """Indices of many ids; ``missing='error'`` raises, ``'skip'`` leaves them out, ``'mark'`` gives -1."""
        ids = [str(e) for e in exts]
        arr = np.fromiter((self._index.get(e, -1) for e in ids), dtype=np.int64, count=len(ids))
        if missing == "mark":
            return arr
        bad = arr < 0
        if bad.any():
            if missing == "skip":
                return arr[~bad]
            first = ids[int(np.flatnonzero(bad)[0])]
            raise UnknownIdError(f"unknown {self.kind} id '{first}' ({int(bad.sum())} unknown in all)")
        return arr

    def id(self, index: int) -> str:
        return self._ids[int(index)]

    def lookup_ids(self, indices: Iterable[int]) -> list[str]:
        ids = self._ids
        return [ids[int(i)] for i in indices]
