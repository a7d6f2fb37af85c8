"""Items added while the service runs (``POST /items``), recommended at once from their text, without refitting.

The retriever knows only the items it was fitted on. A new item gets a text vector instead: its catalog
description embedded by the service's sentence embedder (the same vectors the chat's wish matcher holds for
every catalog item), or, without an embedder, its genres. For a user with a history, the new items closest to
the history's text profile (the mean vector of its newest items) compete for a few places in the list: each
goes where its similarity ranks among the similarities of the retrieved items themselves, so a new item enters
only when its text fits the user at least as well as something already recommended.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from recllm.chat.wishes import WishMatcher
from recllm.data.catalog import Item, ItemCatalog

PROFILE_ITEMS = 50
"""How many of the newest history items make the text profile."""


@dataclass(frozen=True)
class Placed:
    """A new item placed into a list: where, at what score, and why."""

    item: str
    position: int
    score: float
    reason: str


class NewItems:
    """The run-time items beside the base catalog, with their text vectors; thread-safe."""

    def __init__(self, base: ItemCatalog, matcher: Callable[[], WishMatcher | None]) -> None:
        """``matcher`` gives the embedder's item vectors (None: genres stand in); it is asked only once an item
        is added, so a service without run-time items never loads the embedder for them."""
        self.base = base
        self._matcher_source = matcher
        self._matcher: WishMatcher | None = None
        self._asked = False
        self._items: dict[str, Item] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self._catalog: ItemCatalog = base
        self._lock = threading.Lock()
        self._row: dict[str, int] = {}
        self._genres = sorted({g for item in base for g in item.genres})

    @property
    def matcher(self) -> WishMatcher | None:
        if not self._asked:
            self._matcher = self._matcher_source()
            self._row = {item: row for row, item in enumerate(self._matcher.item_ids)} if self._matcher else {}
            self._asked = True
        return self._matcher

    @property
    def catalog(self) -> ItemCatalog:
        """The base catalog followed by the new items."""
        return self._catalog

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: Item) -> None:
        """Add ``item`` (its id new to both catalogs) and compute its text vector."""
        vector = self._vector_of(item)
        with self._lock:
            self._items[item.id] = item
            self._vectors[item.id] = vector
            self._catalog = ItemCatalog([*self.base, *self._items.values()])

    def place(self, ranked: Sequence[tuple[str, float]], history: Sequence[str], exclude: set[str], k: int,
              slots: int) -> list[Placed]:
        """Where the best ``slots`` new items (not in ``history`` nor ``exclude``) enter a list of ``k`` whose
        retrieved part is ``ranked`` (best first); none without a history or when none fits."""
        if not self._items or slots < 1 or not history:
            return []
        profile, anchors = self._profile(history)
        if profile is None:
            return []
        with self._lock:
            candidates = [(i, float(v @ profile)) for i, v in self._vectors.items()
                          if i not in exclude and i not in history]
        candidates.sort(key=lambda pair: (-pair[1], pair[0]))
        retrieved = [float(self._vector_of(self.catalog[i]) @ profile) if i in self.catalog else -np.inf
                     for i, _ in ranked]
        placed: list[Placed] = []
        for item, similarity in candidates[:slots]:
            among = sum(1 for s in retrieved if s >= similarity)  # retrieved items that fit at least as well
            position = among + len(placed)  # the new items placed so far fit better still
            if position >= k:
                continue
            score = ranked[among - 1][1] if among > 0 else (ranked[0][1] if ranked else 0.0)
            closest = max(anchors, key=lambda a: float(self._vector_of(self.catalog[a]) @ self._vectors[item]))
            placed.append(Placed(item, position, float(score),
                                 f"new in the catalog; its description is close to "
                                 f"{self.catalog[closest].label()}, which you watched"))
        return placed

    # ---- vectors ----------------------------------------------------------------------------------
    def _profile(self, history: Sequence[str]) -> tuple[np.ndarray | None, list[str]]:
        known = [h for h in list(history)[-PROFILE_ITEMS:] if h in self.catalog]
        if not known:
            return None, []
        profile = np.mean([self._vector_of(self.catalog[h]) for h in known], axis=0)
        norm = float(np.linalg.norm(profile))
        return (profile / norm if norm > 0 else None), known

    def _vector_of(self, item: Item) -> np.ndarray:
        """A unit text vector: the stored catalog embedding, a fresh one for a new item, or genres alone."""
        if self.matcher is not None:
            row = self._row.get(item.id)
            if row is not None:
                return np.asarray(self.matcher.vectors[row], dtype=np.float32)
            if item.id in self._vectors:
                return self._vectors[item.id]
            return self.matcher.embedder.embed([self._describe(item)])[0]
        vector = np.zeros(max(1, len(self._genres)), dtype=np.float32)
        for genre in item.genres:
            if genre in self._genres:
                vector[self._genres.index(genre)] = 1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector

    @staticmethod
    def _describe(item: Item) -> str:
        return ItemCatalog([item]).describe(item.id)
