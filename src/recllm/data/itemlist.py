"""ItemList: ranked item ids with scores (and optional explanations); what every stage returns."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ScoredItem:
    item: str
    score: float
    explanation: str | None = None


@dataclass(frozen=True, eq=False)
class ItemList:
    """Immutable ranked list: ``items[i]`` has ``scores[i]``; best first."""

    items: tuple[str, ...]
    scores: np.ndarray = field(repr=False)
    explanations: tuple[str | None, ...] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(str(i) for i in self.items))
        scores = np.array(self.scores, dtype=np.float64)
        scores.flags.writeable = False
        object.__setattr__(self, "scores", scores)
        if len(scores) != len(self.items):
            raise ValueError(f"ItemList: {len(self.items)} items but {len(scores)} scores")
        if len(set(self.items)) != len(self.items):
            raise ValueError("ItemList: duplicate item ids")
        if self.explanations is not None:
            object.__setattr__(self, "explanations", tuple(self.explanations))
            if len(self.explanations) != len(self.items):
                raise ValueError("ItemList: explanations and items differ in length")

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ItemList) and self.items == other.items
                and np.array_equal(self.scores, other.scores) and self.explanations == other.explanations)

    __hash__ = None  # type: ignore[assignment]  # holds an array: equal lists need not hash alike

    @classmethod
    def empty(cls) -> ItemList:
        return cls((), np.zeros(0))

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[str, float]]) -> ItemList:
        return cls(tuple(p[0] for p in pairs), np.array([p[1] for p in pairs], dtype=np.float64))

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ScoredItem]:
        for i, item in enumerate(self.items):
            yield ScoredItem(item, float(self.scores[i]),
                             None if self.explanations is None else self.explanations[i])

    def __contains__(self, item: object) -> bool:
        return str(item) in self.items

    def top(self, k: int) -> ItemList:
        return ItemList(self.items[:k], self.scores[:k],
                        None if self.explanations is None else self.explanations[:k])

    def to_records(self) -> list[dict[str, object]]:
        return [{"item": s.item, "score": s.score, **({"explanation": s.explanation}
                                                      if s.explanation is not None else {})}
                for s in self]
