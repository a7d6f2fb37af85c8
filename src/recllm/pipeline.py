"""Pipeline: retrieve -> (re-rank) -> (explain), the object every front end uses, built from one typed config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from recllm.config import load_section
from recllm.data.bundle import DataBundle
from recllm.data.dataset import Dataset
from recllm.data.itemlist import ItemList
from recllm.data.registry import load_dataset
from recllm.errors import RecllmError
from recllm.models.base import Recommender
from recllm.models.registry import create_model


class RetrieverConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    model: str = "ease"
    params: dict[str, Any] = pydantic.Field(default_factory=dict)


class RerankerConfig(pydantic.BaseModel):
    """Which re-ranker re-orders the retriever's top ``candidates``, over which LLM spec."""

    model_config = pydantic.ConfigDict(extra="forbid")
    name: str = "likelihood"
    llm: str = "hf"
    candidates: int = pydantic.Field(default=20, ge=2, le=200)
    options: dict[str, Any] = pydantic.Field(default_factory=dict)


class PipelineConfig(pydantic.BaseModel):
    """The embedded defaults: MovieLens-100K with an EASE retriever (fits in about a second on 2 cores);
    no re-ranker and no explainer unless configured."""

    model_config = pydantic.ConfigDict(extra="forbid")
    dataset: str = "movielens-100k"
    retriever: RetrieverConfig = pydantic.Field(default_factory=RetrieverConfig)
    reranker: RerankerConfig | None = None
    explain: bool = False
    explainer_llm: str = "hf"

    @classmethod
    def from_toml(cls, path: str | Path) -> PipelineConfig:
        return load_section(cls, path, "pipeline")


@dataclass(frozen=True)
class Recommendation:
    """What a front end shows: the ranked items (with explanations when asked) and the stage reports."""

    items: ItemList
    candidates: ItemList
    rerank_diagnostics: Any | None = None
    explanation_details: tuple[Any, ...] = ()


class Pipeline:
    """Retrieve candidates for a user or an ad-hoc history, optionally re-rank them with an LLM and explain
    the result. Results carry external item ids; a re-ranked list is always a permutation of candidates."""

    def __init__(self, retriever: Recommender, data: DataBundle, *, reranker: Any | None = None,
                 explainer: Any | None = None, n_candidates: int = 20) -> None:
        self.retriever = retriever
        self.data = data
        self.reranker = reranker
        self.explainer = explainer
        self.n_candidates = n_candidates

    @classmethod
    def from_config(cls, config: PipelineConfig | None = None, data: DataBundle | None = None) -> Pipeline:
        """Build every stage; LLM stages load their models here (the converted default model in ~1 s)."""
        config = config or PipelineConfig()
        data = data or load_dataset(config.dataset)
        retriever = create_model(config.retriever.model, config.retriever.params)
        reranker = explainer = None
        n_candidates = 20
        if config.reranker is not None or config.explain:
            from recllm.llm import create_llm

            llms: dict[str, Any] = {}

            def llm_for(spec: str) -> Any:
                if spec not in llms:
                    llms[spec] = create_llm(spec)
                return llms[spec]

            from recllm.train.instructions import catalog_for_llm  # tuned with item ids: prompts use those ids

            if config.reranker is not None:
                from recllm.rerank import create_reranker

                n_candidates = config.reranker.candidates
                reranker = create_reranker(config.reranker.name, llm_for(config.reranker.llm),
                                           catalog_for_llm(config.reranker.llm, data.catalog),
                                           **config.reranker.options)
            if config.explain:
                from recllm.tasks import Explainer

                explainer = Explainer(llm_for(config.explainer_llm),
                                      catalog_for_llm(config.explainer_llm, data.catalog))
        return cls(retriever, data, reranker=reranker, explainer=explainer, n_candidates=n_candidates)

    def fit(self, dataset: Dataset | None = None, valid: Dataset | None = None) -> Pipeline:
        self.retriever.fit(dataset or self.data.dataset, valid=valid)
        return self

    def recommend(self, user: str | int | None = None, *, history: list[str] | None = None, k: int = 10,
                  candidates: list[str] | None = None) -> ItemList:
        """The final ranked list (see ``run`` for the stage reports)."""
        return self.run(user, history=history, k=k, candidates=candidates).items

    def run(self, user: str | int | None = None, *, history: list[str] | None = None, k: int = 10,
            candidates: list[str] | None = None) -> Recommendation:
        """Retrieve ``max(k, n_candidates)`` items, re-rank them when a re-ranker is set, keep ``k``, and
        attach an explanation to each when an explainer is set."""
        if k < 1:
            raise RecllmError(f"k must be at least 1, got {k}")
        pool = max(k, self.n_candidates) if self.reranker is not None else k
        retrieved = self.retriever.recommend(user, history=history, k=pool, candidates=candidates,
                                             unknown_items="skip" if history is not None else "error")
        seen = self._history_ids(user, history)
        diagnostics = None
        ranked = retrieved
        if self.reranker is not None and len(retrieved) > 1:
            result = self.reranker.rerank(seen, retrieved, user=user)
            ranked, diagnostics = result.items, result.diagnostics
        ranked = ranked.top(k)
        details: tuple[Any, ...] = ()
        if self.explainer is not None and len(ranked):
            explained = self.explainer.explain_many([(seen, item) for item in ranked.items])
            ranked = ItemList(ranked.items, ranked.scores, tuple(e.text for e in explained))
            details = tuple(explained)
        return Recommendation(ranked, retrieved, diagnostics, details)

    def _history_ids(self, user: str | int | None, history: list[str] | None) -> list[str]:
        if history is not None:
            known = self.data.catalog
            return [str(h) for h in history if str(h) in known]
        assert self.retriever.item_vocab is not None and self.retriever.user_vocab is not None
        indices = self.retriever.history_of(self.retriever.user_vocab.index(user))
        return self.retriever.item_vocab.lookup_ids(indices)
