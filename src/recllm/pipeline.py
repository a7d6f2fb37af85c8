"""Pipeline: the object every front end uses. For now retriever only; re-ranking and explanation stages
attach here in later layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic

from recllm.config import build, load_toml
from recllm.data.bundle import DataBundle
from recllm.data.dataset import Dataset
from recllm.data.itemlist import ItemList
from recllm.data.registry import load_dataset
from recllm.models.base import Recommender
from recllm.models.registry import create_model


class RetrieverConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    model: str = "ease"
    params: dict[str, Any] = pydantic.Field(default_factory=dict)


class PipelineConfig(pydantic.BaseModel):
    """The embedded defaults: MovieLens-100K with an EASE retriever (fits in about a second on 2 cores)."""

    model_config = pydantic.ConfigDict(extra="forbid")
    dataset: str = "movielens-100k"
    retriever: RetrieverConfig = pydantic.Field(default_factory=RetrieverConfig)

    @classmethod
    def from_toml(cls, path: str | Path) -> PipelineConfig:
        raw = load_toml(path)
        return build(cls, raw.get("pipeline", raw), where=str(path))


class Pipeline:
    """Retrieve candidates for a user or an ad-hoc history; results carry external item ids."""

    def __init__(self, retriever: Recommender, data: DataBundle) -> None:
        self.retriever = retriever
        self.data = data

    @classmethod
    def from_config(cls, config: PipelineConfig | None = None, data: DataBundle | None = None) -> Pipeline:
        config = config or PipelineConfig()
        data = data or load_dataset(config.dataset)
        return cls(create_model(config.retriever.model, config.retriever.params), data)

    def fit(self, dataset: Dataset | None = None, valid: Dataset | None = None) -> Pipeline:
        self.retriever.fit(dataset or self.data.dataset, valid=valid)
        return self

    def recommend(self, user: str | int | None = None, *, history: list[str] | None = None, k: int = 10,
                  candidates: list[str] | None = None) -> ItemList:
        return self.retriever.recommend(user, history=history, k=k, candidates=candidates,
                                        unknown_items="skip" if history is not None else "error")
