"""DataBundle: a Dataset together with the ItemCatalog that describes its items."""

from __future__ import annotations

from dataclasses import dataclass

from recllm.data.catalog import ItemCatalog
from recllm.data.dataset import Dataset


@dataclass(frozen=True)
class DataBundle:
    dataset: Dataset
    catalog: ItemCatalog

    @property
    def name(self) -> str:
        return self.dataset.name
