"""The one composition path: retrieve -> (re-rank) -> (explain), built from one typed config.

Every front end builds its stages here: ``recllm recommend`` and ``demo`` through ``Pipeline``, the
service and its chat through the pipeline their ``recllm.serve.service.ServiceConfig`` holds, and
``recllm evaluate`` through the same component builders (``build_retriever``, ``build_reranker``).
So a component registered once (a model, re-ranker, LLM backend or embedder) is usable by name everywhere,
and the rules that make stages fit together live in one place:

- a recommender that reads item text (``recllm.models.text.ReadsItemText``, e.g. TIGER) gets the
  embeddings of the catalog's texts from its ``embedder`` before it is fitted;
- an LLM tuned with random or semantic item ids sees the catalog renamed to those ids
  (``recllm.prompts.naming.catalog_for_llm``) in every LLM stage: re-ranking, explanation, rating.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pydantic

from recllm.config import load_section
from recllm.data.bundle import DataBundle
from recllm.data.catalog import ItemCatalog
from recllm.data.dataset import Dataset
from recllm.data.itemlist import ItemList
from recllm.data.registry import load_dataset
from recllm.errors import ConfigError, RecllmError
from recllm.llm.base import LLM
from recllm.models.base import Recommender
from recllm.models.popularity import MostPopular
from recllm.models.registry import create_model
from recllm.models.text import ItemEmbeddings, ReadsItemText
from recllm.prompts.naming import catalog_for_llm
from recllm.rerank.base import Reranker, RerankRequest, RerankResult
from recllm.rerank.factory import reranker_needs_llm
from recllm.rerank.mitigation import PopularityBins, mitigate


class RetrieverConfig(pydantic.BaseModel):
    """The candidate generator: a registered model name and its hyper-parameters."""

    model_config = pydantic.ConfigDict(extra="forbid")
    model: str = "ease"
    params: dict[str, Any] = pydantic.Field(default_factory=dict)


class RerankerConfig(pydantic.BaseModel):
    """Which re-ranker re-orders the retriever's top ``candidates``; ``llm`` is its own LLM spec (None: the
    pipeline's ``llm``); ``options`` are validated against the re-ranker's constructor."""

    model_config = pydantic.ConfigDict(extra="forbid")
    name: str = "likelihood"
    llm: str | None = None
    candidates: int = pydantic.Field(default=20, ge=2, le=200)
    options: dict[str, Any] = pydantic.Field(default_factory=dict)


class MitigationConfig(pydantic.BaseModel):
    """A popularity mitigation of the final list (``recllm.rerank.mitigation``): ``popularity-calibration``
    (Steck's calibration over head/mid/tail bins, ``weight`` of the calibration term), ``tail-quota`` (every
    prefix at least ``share`` long-tail items) or ``popularity-penalty`` (``weight`` of the items' popularity
    percentile against relevance; ``recllm audit --mitigate popularity-penalty`` reports the weight that
    matches the first items' popularity to users' next items on validation users). It re-orders the re-ranked
    candidates, or without a re-ranker the retriever's top ``pool``; ``recllm audit --mitigate`` measures the
    cost of each in NDCG."""

    model_config = pydantic.ConfigDict(extra="forbid")
    name: Literal["popularity-calibration", "tail-quota", "popularity-penalty"]
    pool: int = pydantic.Field(default=100, ge=2, le=1000)
    weight: float = pydantic.Field(default=0.5, ge=0.0, le=1.0)
    share: float = pydantic.Field(default=0.3, ge=0.0, le=1.0)


class PipelineConfig(pydantic.BaseModel):
    """The embedded defaults: MovieLens-100K with an EASE retriever (fits in about a second on 2 cores);
    no re-ranker and no explanations unless configured. ``llm`` is the language model of every LLM stage
    that names none (``"none"``: no LLM stages at all); ``explain`` explains each item by default."""

    model_config = pydantic.ConfigDict(extra="forbid")
    dataset: str = "movielens-100k"
    retriever: RetrieverConfig = pydantic.Field(default_factory=RetrieverConfig)
    llm: str = "hf"
    reranker: RerankerConfig | None = None
    explain: bool = False
    explainer_llm: str | None = None
    mitigation: MitigationConfig | None = None

    @classmethod
    def from_toml(cls, path: str | Path) -> PipelineConfig:
        return load_section(cls, path, "pipeline")

    @property
    def reranker_llm(self) -> str:
        """The LLM spec the re-ranker runs on."""
        return (self.reranker.llm if self.reranker is not None and self.reranker.llm else None) or self.llm

    @property
    def explainer_spec(self) -> str:
        """The LLM spec explanations and ratings run on."""
        return self.explainer_llm or self.llm


# ---- component builders: the one place each kind of component is made ---------------------------------
def build_retriever(config: RetrieverConfig | str, data: DataBundle, params: dict[str, Any] | None = None
                    ) -> Recommender:
    """An unfitted recommender by registered name (or ``config``) with validated ``params``; a model that
    reads item text gets the embeddings of ``data``'s catalog (or of its ``catalog`` dataset) handed over."""
    if isinstance(config, str):
        config = RetrieverConfig(model=config, params=params or {})
    model = create_model(config.model, config.params)
    if isinstance(model, ReadsItemText) and model.needs_item_embeddings():
        from recllm.llm.item_text import embed_items

        source = model.text_source()
        catalog = data.catalog if source is None else load_dataset(source).catalog
        item_ids = list(data.dataset.item_vocab.ids)
        if not any(item in catalog for item in item_ids):
            raise ConfigError(f"{model.name}: cannot find item texts for dataset '{data.name}': none of its items "
                              "is in the catalog" + ("" if source is None else f" of '{source}'"))
        if model.profiles != "none":
            catalog = _profiled(catalog, item_ids, model.profiles)
        model.with_item_embeddings(ItemEmbeddings(tuple(item_ids), embed_items(catalog, item_ids, model.embedder)))
    return model


def _profiled(catalog: ItemCatalog, item_ids: list[str], spec: str) -> ItemCatalog:
    """``catalog`` with the checked profiles that the LLM of ``spec`` writes for ``item_ids`` (answers cached
    on disk, so only the first fit over a catalog runs the model)."""
    from recllm.llm.cache import CachedLLM
    from recllm.tasks.profiles import profiled_catalog, write_profiles

    report = write_profiles(CachedLLM(build_llm(spec)), catalog, [i for i in item_ids if i in catalog])
    return profiled_catalog(catalog, report)


def build_llm(spec: str) -> LLM:
    """The LLM of ``spec`` (``hf``, ``hf:PATH``, ``openai:URL[,key=value...]`` or a registered backend)."""
    if spec.strip().lower() == "none":
        raise ConfigError("no language model is configured (llm = 'none')")
    from recllm.llm.factory import create_llm

    return create_llm(spec)


def llm_catalog(spec: str, catalog: ItemCatalog) -> ItemCatalog:
    """The catalog as the LLM of ``spec`` names the items (renamed for an adapter tuned with item ids)."""
    return catalog_for_llm(spec, catalog)


def build_reranker(name: str, llm: LLM | None, catalog: ItemCatalog, options: dict[str, Any] | None = None
                   ) -> Reranker:
    """The registered re-ranker ``name`` over ``llm`` (None for one that needs none, e.g. ``distilled``) and a
    catalog already named as ``llm`` knows it."""
    from recllm.rerank.factory import create_reranker

    if llm is None and reranker_needs_llm(name):
        raise ConfigError(f"re-ranker '{name}' runs on a language model, and none is configured")
    return create_reranker(name, llm, catalog, **dict(options or {}))


@dataclass
class LLMStages:
    """The stages that run on a language model, each over the catalog as its model names the items."""

    llm: LLM
    reranker: Reranker | None
    explainer: Any
    rater: Any


@dataclass(frozen=True)
class Recommendation:
    """What a front end shows: the ranked items (with explanations when asked) and the stage reports."""

    items: ItemList
    candidates: ItemList
    rerank_diagnostics: Any | None = None
    explanation_details: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ListRequest:
    """One list to make (``Pipeline.run``'s arguments): for a known ``user`` or an ad-hoc ``history``, ``k``
    items, optionally only from ``candidates``, never ``exclude``; ``rerank`` and ``explain`` None follow the
    pipeline (a re-ranker set; the config's ``explain``)."""

    user: str | int | None = None
    history: list[str] | None = None
    k: int = 10
    candidates: list[str] | None = None
    exclude: tuple[str, ...] = ()
    rerank: bool | None = None
    explain: bool | None = None


@dataclass(frozen=True)
class _Plan:
    """A checked request with its user's history ids, its retrieved candidates and the stages it runs."""

    request: ListRequest
    seen: list[str]
    retrieved: ItemList
    rerank: bool
    explain: bool


class Pipeline:
    """Retrieve candidates for a user or an ad-hoc history, optionally re-rank them with an LLM and explain
    the result. Results carry external item ids; a re-ranked list is always a permutation of candidates.

    LLM stage calls hold ``llm_lock``, so several threads (the service's requests) share one model safely.
    An empty history is answered by the most popular items (``fallback``), never by arbitrary ties.
    """

    def __init__(self, retriever: Recommender, data: DataBundle, *, reranker: Reranker | None = None,
                 explainer: Any | None = None, n_candidates: int = 20, config: PipelineConfig | None = None,
                 fallback: Recommender | None = None) -> None:
        self.retriever = retriever
        self.data = data
        self.reranker = reranker
        self.explainer = explainer
        self.rater: Any | None = None
        self.llm: LLM | None = None
        self.n_candidates = n_candidates
        self.config = config or PipelineConfig(dataset=data.name)
        self.fallback = fallback
        self.bins: PopularityBins | None = None
        self.llm_lock = threading.RLock()

    @classmethod
    def from_config(cls, config: PipelineConfig | None = None, data: DataBundle | None = None, *,
                    llm: LLM | None = None, load_llm: bool = True,
                    wrap_llm: Callable[[LLM], LLM] | None = None) -> Pipeline:
        """Build every stage. LLM stages are built when the config asks for re-ranking or explanations and
        ``load_llm`` is true (the converted default model loads in about a second); ``llm`` replaces the
        model the config's spec names, ``wrap_llm`` wraps whichever is used (e.g. in a response cache)."""
        config = config or PipelineConfig()
        data = data or load_dataset(config.dataset)
        retriever = build_retriever(config.retriever, data)
        n_candidates = config.reranker.candidates if config.reranker is not None else 20
        pipeline = cls(retriever, data, n_candidates=n_candidates, config=config)
        if config.reranker is not None and not reranker_needs_llm(config.reranker.name):
            pipeline.reranker = build_reranker(config.reranker.name, None, data.catalog, config.reranker.options)
        if load_llm and (pipeline.needs_llm or config.explain):
            pipeline.attach_llm(llm, wrap=wrap_llm)
        return pipeline

    @property
    def needs_llm(self) -> bool:
        """Whether the configured re-ranker runs on a language model (explanations need one in any case)."""
        return self.config.reranker is not None and reranker_needs_llm(self.config.reranker.name)

    # ---- LLM stages ----------------------------------------------------------------------------------
    def attach_llm(self, llm: LLM | None = None, *, wrap: Callable[[LLM], LLM] | None = None,
                   rating_fallback: Any | None = None) -> LLMStages:
        """Build the LLM stages (re-ranker when configured, explainer, rater) over ``llm`` or the models the
        config's specs name; each stage sees the catalog as its model names the items."""
        config = self.config
        models: dict[str, LLM] = {}

        def model_for(spec: str) -> LLM:
            if spec not in models:
                base = llm if llm is not None else build_llm(spec)
                models[spec] = wrap(base) if wrap is not None else base
            return models[spec]

        from recllm.tasks import Explainer, RatingPredictor

        reranker = self.reranker if self.reranker is not None and not self.reranker.needs_llm else None
        if config.reranker is not None and reranker is None:
            spec = config.reranker_llm
            reranker = build_reranker(config.reranker.name, model_for(spec), llm_catalog(spec, self.data.catalog),
                                      config.reranker.options)
        spec = config.explainer_spec
        model = model_for(spec)
        catalog = llm_catalog(spec, self.data.catalog)
        explainer = Explainer(model, catalog)
        rater = RatingPredictor(model, catalog, fallback=rating_fallback) if model.can_score else \
            RatingPredictor(model, catalog, mode="generate", fallback=rating_fallback)
        self.reranker, self.explainer, self.rater, self.llm = reranker, explainer, rater, model
        return LLMStages(model, reranker, explainer, rater)

    # ---- fitting and recommending --------------------------------------------------------------------
    def fit(self, dataset: Dataset | None = None, valid: Dataset | None = None) -> Pipeline:
        """Fit the retriever (and the popularity fallback for empty histories) on ``dataset`` (default: all
        of the pipeline's data)."""
        data = dataset or self.data.dataset
        self.retriever.fit(data, valid=valid)
        self.fallback = MostPopular().fit(data)
        if self.config.mitigation is not None:
            counts = np.bincount(data.items, minlength=data.n_items)
            self.bins = PopularityBins(dict(zip(data.item_vocab.ids, counts.tolist(), strict=True)))
        return self

    def recommend(self, user: str | int | None = None, *, history: list[str] | None = None, k: int = 10,
                  candidates: list[str] | None = None) -> ItemList:
        """The final ranked list (see ``run`` for the stage reports)."""
        return self.run(user, history=history, k=k, candidates=candidates).items

    def run(self, user: str | int | None = None, *, history: list[str] | None = None, k: int = 10,
            candidates: list[str] | None = None, exclude: Iterable[str] = (), rerank: bool | None = None,
            explain: bool | None = None) -> Recommendation:
        """Retrieve ``max(k, n_candidates)`` items (never the history nor ``exclude``), re-rank them when a
        re-ranker is set (``rerank`` False skips it), keep ``k``, and attach an explanation to each when
        ``explain`` (default: the config's ``explain``). History items unknown to the retriever are skipped."""
        return self.run_many([ListRequest(user, history, k, candidates, tuple(exclude), rerank, explain)])[0]

    def run_many(self, requests: Sequence[ListRequest]) -> list[Recommendation]:
        """``run`` for each request, in order; the lists to re-rank go to the re-ranker together (one model pass
        where it ``scores_jointly``), so concurrent users share the model's work."""
        plans = [self._retrieve(request) for request in requests]
        reranked: dict[int, RerankResult] = {}
        chosen = [i for i, plan in enumerate(plans) if plan.rerank and len(plan.retrieved) > 1]
        if chosen and self.reranker is not None:
            with self.llm_lock:
                results = self.reranker.rerank_many([RerankRequest(plans[i].seen, plans[i].retrieved,
                                                                   plans[i].request.user) for i in chosen])
            reranked = dict(zip(chosen, results, strict=True))
        return [self._finish(plan, reranked.get(i)) for i, plan in enumerate(plans)]

    def _retrieve(self, request: ListRequest) -> _Plan:
        """The request checked and its candidates retrieved."""
        user, history, k = request.user, request.history, request.k
        if k < 1:
            raise RecllmError(f"k must be at least 1, got {k}")
        if (user is None) == (history is None):
            raise RecllmError("give exactly one of a user id or a history")
        rerank = self.reranker is not None if request.rerank is None else request.rerank
        explain = self.config.explain if request.explain is None else request.explain
        if rerank and self.reranker is None:
            raise RecllmError("this pipeline has no re-ranker (configure [pipeline.reranker])")
        if explain and self.explainer is None:
            raise RecllmError("this pipeline has no explainer (its language model is not attached)")
        mitigation = self.config.mitigation
        pool = max(k, self.n_candidates) if rerank else max(k, mitigation.pool) if mitigation is not None else k
        seen = self._history_ids(user, history)
        extra = list(request.exclude)
        model = self.retriever if seen or self.fallback is None else self.fallback
        if history is None and not extra and model is self.retriever:
            retrieved = model.recommend(user, k=pool, candidates=request.candidates)
        else:
            retrieved = model.recommend(history=seen, k=pool, candidates=request.candidates, exclude=[*seen, *extra],
                                        unknown_items="skip")
        return _Plan(request, seen, retrieved, rerank, explain)

    def _finish(self, plan: _Plan, reranked: RerankResult | None) -> Recommendation:
        """The final ``k`` (re-ranked when it was, mitigated when configured), explained when asked."""
        ranked, diagnostics = (reranked.items, reranked.diagnostics) if reranked is not None else (plan.retrieved, None)
        k = plan.request.k
        ranked = self._mitigated(ranked, plan.seen, k) if self.config.mitigation is not None else ranked.top(k)
        details: tuple[Any, ...] = ()
        if plan.explain and self.explainer is not None and len(ranked):
            with self.llm_lock:
                explained = self.explainer.explain_many([(plan.seen, item) for item in ranked.items])
            ranked = ItemList(ranked.items, ranked.scores, tuple(e.text for e in explained))
            details = tuple(explained)
        return Recommendation(ranked, plan.retrieved, diagnostics, details)

    def _mitigated(self, ranked: ItemList, history: list[str], k: int) -> ItemList:
        """The top ``k`` of ``ranked`` after the configured popularity mitigation."""
        mitigation = self.config.mitigation
        assert mitigation is not None
        if self.bins is None:
            raise RecllmError("the pipeline's mitigation needs item popularity: fit the pipeline first")
        return mitigate(mitigation.name, ranked, history, self.bins, k=k, weight=mitigation.weight,
                        share=mitigation.share)

    def _history_ids(self, user: str | int | None, history: list[str] | None) -> list[str]:
        if history is not None:
            known = self.data.catalog
            return [str(h) for h in history if str(h) in known]
        assert self.retriever.item_vocab is not None and self.retriever.user_vocab is not None
        indices = self.retriever.history_of(self.retriever.user_vocab.index(user))
        return self.retriever.item_vocab.lookup_ids(indices)
