"""DataBundle: a Dataset together with the ItemCatalog that describes its items."""

from __future__ import annotations

from dataclasses import dataclass

from recllm.data.catalog import ItemCatalog
from recllm.data.dataset import Dataset


@dataclass(frozen=True)
class DataBundle:
    """The dataset, its catalog and how it was validated: ``rating_range`` is the inclusive [low, high] the
    loader enforced on ratings (None: no range was declared), so tools can report it."""

    dataset: Dataset
    catalog: ItemCatalog
    rating_range: tuple[float, float] | None = None

    @property
    def name(self) -> str:
        return self.dataset.name
