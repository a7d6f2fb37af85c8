"""What the HTTP API does, without HTTP: recommendations, search, rating, explanation and feedback for known
and ad-hoc users, with feedback from the store folded into each user's history at once.

A user's history is their dataset history followed by their stored positive feedback (like, watched, any
rating) in time order; disliked items are never recommended again. The retriever scores that history
directly (every classic model takes ad-hoc histories), so feedback changes the very next list. LLM stages
(re-ranking, explanation, rating) go through the store's response cache; when the model cannot be loaded
or stops answering they raise ``LLMUnavailableError`` and the rest of the service keeps working.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import pydantic

from recllm.chat import (
    AspectAnalyzer,
    ChatAgent,
    ChatRecommender,
    ChatReply,
    DecisionReport,
    LLMExtractor,
    Preferences,
    RuleExtractor,
    WishMatcher,
)
from recllm.chat.agent import degraded_sentence
from recllm.chat.aspects import Comparison
from recllm.chat.criteria import read_criteria
from recllm.config import load_section
from recllm.data.bundle import DataBundle
from recllm.data.catalog import Item, ItemCatalog
from recllm.data.registry import load_dataset
from recllm.errors import RecllmError
from recllm.llm.base import LLM, LLMError
from recllm.models.base import Recommender
from recllm.models.rating import BiasedBaseline
from recllm.pipeline import (
    ListRequest,
    LLMStages,
    Pipeline,
    PipelineConfig,
    Recommendation,
    RerankerConfig,
    RetrieverConfig,
)
from recllm.serve.new_items import NewItems
from recllm.serve.storage import FeedbackRecord, ItemRecord, StorageError, Store

log = logging.getLogger(__name__)

POSITIVE = ("like", "watched", "rating")
LLM_RETRY_S = 10.0
"""A language model that failed to load is tried again after this many seconds (its server may be back)."""
HEALTH_TTL_S = 2.0
"""How long a check of the model's health is reused."""
HEALTH_TIMEOUT_S = 3.0
"""The time a health check may take."""


class ServiceError(RecllmError):
    """A request the service cannot serve; ``status`` is the HTTP status it maps to, ``headers`` any headers
    the answer carries (Retry-After, say)."""

    status = 400

    @property
    def headers(self) -> dict[str, str]:
        return {}


class NotFoundError(ServiceError):
    status = 404


class LLMUnavailableError(ServiceError):
    status = 503


class PayloadTooLargeError(ServiceError):
    status = 413


DEFAULT_K = 10
"""How many items a list holds when a request does not say (the API's default too)."""


class ConflictError(ServiceError):
    status = 409


def _service_pipeline() -> PipelineConfig:
    return PipelineConfig(retriever=RetrieverConfig(params={"l2": 100.0}), reranker=RerankerConfig())


class ServiceConfig(pydantic.BaseModel):
    """The service's settings. ``pipeline`` is the one composition config (the same ``PipelineConfig`` that
    ``recllm recommend`` reads): dataset, retriever, LLM spec, re-ranker and its candidates. The embedded
    defaults: MovieLens-100K, EASE (l2 = 100), the default LLM for re-ranking (likelihood), explanations,
    ratings and the chat, and the default sentence embedder for the chat's free-text wishes.
    ``pipeline.llm = "none"`` / ``embedder = "none"`` run without them."""

    model_config = pydantic.ConfigDict(extra="forbid")
    pipeline: PipelineConfig = pydantic.Field(default_factory=_service_pipeline)
    max_k: int = pydantic.Field(default=50, ge=1, le=500)
    chat_items: int = pydantic.Field(default=5, ge=1, le=20)
    chat_rerank: bool = True
    chat_llm_extraction: bool = True
    embedder: str = "st"
    wish_weight: float = pydantic.Field(default=1.0, ge=0.0, le=10.0)
    max_message_chars: int = pydantic.Field(default=2000, ge=10, le=100_000)
    api_key: str | None = pydantic.Field(default=None, min_length=8, description="when set (or given in the "
                                         "environment as RECLLM_API_KEY, which wins), writes (POST /feedback, POST "
                                         "/items) and admin routes (/metrics) need it")
    cors_origins: list[str] = pydantic.Field(default_factory=list, description="origins a browser may call the "
                                             "API from (none by default: the page is served by the API itself)")
    llm_timeout_s: float = pydantic.Field(default=15.0, gt=0, le=600, description="seconds one call to a model "
                                          "server may take before the request answers without it")
    new_item_slots: int = pydantic.Field(default=2, ge=0, le=20, description="places in a list that items added "
                                         "at run time may take, by text similarity to the user's history")
    list_cache_size: int = pydantic.Field(default=20_000, ge=0, le=10_000_000, description="users' lists each "
                                          "worker keeps ready to send, current until that user's feedback or a "
                                          "new item changes them (0: none)")
    llm_queue: int = pydantic.Field(default=16, ge=1, le=10_000, description="model requests (re-ranked or "
                                    "explained lists, ratings, explanations) queued or running in a worker "
                                    "before the next is refused with 503 and Retry-After")
    rerank_batch: int | None = pydantic.Field(default=None, ge=1, le=256, description="re-ranked lists of "
                                              "different users waiting on the model that one model call answers "
                                              "together (default: 8 where the re-ranker scores users jointly, as "
                                              "on a GPU or a batching model server; else 1)")
    warm_llm: bool = pydantic.Field(default=True, description="run one re-ranked, explained list at start, so "
                                    "the first person's request does not pay the model's first-call costs")

    @classmethod
    def from_toml(cls, path: str | Path) -> ServiceConfig:
        return load_section(cls, path, "service")

    @property
    def llm(self) -> str:
        """The LLM spec of the pipeline (``"none"``: no language model)."""
        return self.pipeline.llm

    @property
    def candidates(self) -> int:
        return self.pipeline.reranker.candidates if self.pipeline.reranker is not None else 20

    def with_llm(self, spec: str) -> ServiceConfig:
        """These settings with every LLM stage on ``spec`` (what ``recllm serve --llm`` does)."""
        reranker = self.pipeline.reranker.model_copy(update={"llm": None}) if self.pipeline.reranker else None
        pipeline = self.pipeline.model_copy(update={"llm": spec, "reranker": reranker, "explainer_llm": None})
        return self.model_copy(update={"pipeline": pipeline})


@dataclass(frozen=True)
class RecommendedItem:
    """One recommended item as a front end shows it."""

    item: str
    title: str
    year: int | None
    genres: tuple[str, ...]
    score: float
    reason: str | None = None
    reason_checked: bool | None = None


@dataclass(frozen=True)
class Recommendations:
    """A list for one user or history, how it was made, and the LLM diagnostics when one re-ranked it."""

    user: str | None
    items: tuple[RecommendedItem, ...]
    reranked: bool
    explained: bool
    history_length: int
    diagnostics: dict[str, Any] | None = None


@dataclass(frozen=True)
class ListAsk:
    """One list a client asked for: a known ``user`` or an ad-hoc ``history``, ``k`` items, re-ranked and
    explained or not."""

    user: str | None = None
    history: tuple[str, ...] | None = None
    k: int = DEFAULT_K
    rerank: bool = False
    explain: bool = False


@dataclass(frozen=True)
class _Prepared:
    """A checked ask with the user's history ids and disliked items."""

    ask: ListAsk
    seen: list[str]
    disliked: set[str]


@dataclass
class Service:
    """Holds the data, the pipeline (fitted retriever; LLM stages attached lazily) and the store."""

    config: ServiceConfig
    store: Store
    pipeline: Pipeline
    baseline: BiasedBaseline | None
    llm_error: str | None = None
    embedder_error: str | None = None
    _stages: LLMStages | None = None
    _wishes: WishMatcher | None = None
    _new_items: NewItems | None = None
    _llm: LLM | None = None
    _llm_failed_at: float = 0.0
    _health: tuple[float, str | None] = (0.0, None)
    _embed_lock: threading.Lock = field(default_factory=threading.Lock)
    _items_lock: threading.RLock = field(default_factory=threading.RLock)
    _chat_agents: dict[str, tuple[LLMStages | None, ChatAgent]] = field(default_factory=dict)

    @classmethod
    def start(cls, config: ServiceConfig | None = None, store: Store | None = None, *, data: DataBundle | None = None,
              llm: LLM | None = None) -> Service:
        """Load the data, fit the pipeline's retriever (EASE on MovieLens-100K: about a second) and open the
        store; the LLM stages are built on first use or by ``load_llm``."""
        config = config or ServiceConfig()
        data = data or load_dataset(config.pipeline.dataset)
        pipeline = Pipeline.from_config(config.pipeline, data, load_llm=False).fit(data.dataset)
        baseline = BiasedBaseline().fit(data.dataset) if data.dataset.ratings is not None else None
        return cls(config, store or Store(), pipeline, baseline, _llm=llm)

    @property
    def data(self) -> DataBundle:
        return self.pipeline.data

    @property
    def catalog(self) -> ItemCatalog:
        """The dataset's catalog followed by the items added at run time."""
        return self.new_items.catalog

    @property
    def new_items(self) -> NewItems:
        """Items added at run time (loaded from the store on first use, with the embedder's text vectors)."""
        if self._new_items is not None:
            return self._new_items
        with self._items_lock:
            if self._new_items is None:
                added = NewItems(self.data.catalog, self.wish_matcher)
                self._add_stored(added)
                self._new_items = added
            return self._new_items

    def _add_stored(self, added: NewItems) -> None:
        """Add to ``added`` the stored items it lacks (all of them at start; later, those another worker added)."""
        for record in self.store.items():
            if record.id not in added:
                added.add(_item_of(record))

    def list_version(self, user: str) -> tuple[int, int]:
        """What ``user``'s lists depend on in the store (``Store.list_version``): a cached list is current while
        this is unchanged. Items another worker added since this one loaded its catalog are loaded here."""
        version = self.store.list_version(user)
        self._load_new_items(version[1])
        return version

    def _load_new_items(self, stored: int | None = None) -> None:
        """Add the stored items this process has not loaded yet (another worker may have added them); nothing
        to do when the store holds ``stored`` items and this process has as many."""
        if stored is None:
            stored = self.store.item_count()
        if stored == len(self.new_items):
            return
        with self._items_lock:
            self._add_stored(self.new_items)

    def add_item(self, title: str, *, item: str | None = None, year: int | None = None,
                 genres: Sequence[str] = (), description: str = "") -> Item:
        """Store a new item (committed when this returns) and make it searchable and recommendable at once."""
        title = title.strip()
        if not title:
            raise ServiceError("the item's title is empty")
        item = (item or f"new-{uuid.uuid4().hex[:12]}").strip()
        if item in self.catalog:
            raise ConflictError(f"item {item!r} exists already")
        clean = tuple(dict.fromkeys(g.strip() for g in genres if g.strip()))
        try:
            record = self.store.add_item(item, title, year, clean, description.strip())
        except StorageError as exc:
            raise ConflictError(str(exc)) from exc
        added = _item_of(record)
        self.new_items.add(added)
        return added

    @property
    def retriever(self) -> Recommender:
        return self.pipeline.retriever

    @property
    def popular(self) -> Recommender:
        assert self.pipeline.fallback is not None
        return self.pipeline.fallback

    @property
    def _lock(self) -> threading.RLock:
        """One request on the language model at a time: the pipeline's LLM lock."""
        return self.pipeline.llm_lock

    # ---- users ---------------------------------------------------------------------------------------
    def is_known(self, user: str) -> bool:
        return user in self.data.dataset.user_vocab or bool(self.store.feedback(user))

    def history(self, user: str) -> tuple[list[str], set[str]]:
        """(history item ids oldest first, disliked item ids) of a known user; NotFoundError otherwise."""
        events = self.store.feedback(user)
        in_data = user in self.data.dataset.user_vocab
        if not in_data and not events:
            raise NotFoundError(f"unknown user '{user}': not in {self.data.name} and no feedback stored")
        history: list[str] = []
        if in_data:
            index = self.data.dataset.user_vocab.index(user)
            history = self.data.dataset.item_vocab.lookup_ids(self.data.dataset.sequence(index))
        disliked: set[str] = set()
        for event in events:
            if event.kind in POSITIVE:
                history.append(event.item)
                disliked.discard(event.item)
            else:
                disliked.add(event.item)
        return history, disliked

    def visitor_history(self, user: str) -> tuple[list[str], set[str]]:
        """``history`` for a user the service may not know yet (a page visitor before any feedback): empty
        then."""
        try:
            return self.history(user)
        except NotFoundError:
            return [], set()

    # ---- items ---------------------------------------------------------------------------------------
    def item(self, item: str) -> Item:
        if item not in self.catalog:
            self._load_new_items()  # another worker may have added it
        if item not in self.catalog:
            raise NotFoundError(f"unknown item '{item}' (not in the {self.data.name} catalog)")
        return self.catalog[item]

    def _dataset_item(self, item: str, what: str) -> None:
        """NotFound for an unknown item; a clear error for one added at run time, which ``what`` cannot use."""
        self.item(item)
        if item in self.new_items:
            raise ConflictError(f"item {item!r} was added at run time: {what} needs an item of the "
                                f"{self.data.name} catalog (its recommendations carry a text-based reason)")

    def search(self, query: str, limit: int = 10) -> list[Item]:
        """Catalog items whose titles match ``query`` as a person types it: word starts, any case, articles
        left out, small typos (``ItemCatalog.search``)."""
        query = query.strip()
        if not query:
            raise ServiceError("the search query is empty")
        self._load_new_items()  # items another worker added are found too
        return self.catalog.search(query, limit=limit)

    # ---- recommendations -----------------------------------------------------------------------------
    def recommend(self, user: str | None = None, *, history: list[str] | None = None, k: int = DEFAULT_K,
                  rerank: bool = False, explain: bool = False) -> Recommendations:
        """Top ``k`` for a known ``user`` (dataset history plus stored feedback) or an ad-hoc ``history``."""
        outcome = self.recommend_many([ListAsk(user, tuple(history) if history is not None else None, k, rerank,
                                               explain)])[0]
        if isinstance(outcome, ServiceError):
            raise outcome
        return outcome

    @property
    def list_batch(self) -> int:
        """How many concurrent re-ranked lists the model's queue hands to ``recommend_many`` at once:
        ``rerank_batch`` when set, else 8 where the re-ranker scores users jointly (a GPU, a model server
        that batches) and 1 where it would only loop (then gathering would only make the first wait)."""
        if self.config.rerank_batch is not None:
            return self.config.rerank_batch
        reranker = self.pipeline.reranker
        return 8 if self._stages is not None and reranker is not None and reranker.scores_jointly else 1

    def recommend_many(self, asks: Sequence[ListAsk]) -> list[Recommendations | ServiceError]:
        """``recommend`` for each ask, in order, with the re-ranking of all of them in one model call; a bad
        ask is answered by its own error (the others go on), and when the joint call fails each list is made
        again alone, so one user's failure is never another's."""
        prepared: list[_Prepared | ServiceError] = []
        for ask in asks:
            try:
                prepared.append(self._prepare(ask))
            except ServiceError as exc:
                prepared.append(exc)
        ready = {i: p for i, p in enumerate(prepared) if not isinstance(p, ServiceError)}
        outcomes: dict[int, Recommendations | ServiceError] = {i: p for i, p in enumerate(prepared)
                                                               if isinstance(p, ServiceError)}
        try:
            outcomes.update(zip(ready, self._run(list(ready.values())), strict=True))
        except ServiceError as failed:
            for i, one in ready.items():
                try:
                    outcomes[i] = self._run([one])[0] if len(ready) > 1 else failed
                except ServiceError as exc:
                    outcomes[i] = exc
        return [outcomes[i] for i in range(len(asks))]

    def _prepare(self, ask: ListAsk) -> _Prepared:
        """The ask checked, with the user's history and dislikes (or the ad-hoc history's known items)."""
        user, history, k = ask.user, ask.history, ask.k
        if not 1 <= k <= self.config.max_k:
            raise ServiceError(f"k must be between 1 and {self.config.max_k}, got {k}")
        if (user is None) == (history is None):
            raise ServiceError("give exactly one of a user id or a history")
        disliked: set[str] = set()
        if user is not None:
            seen, disliked = self.history(user)
        else:
            unknown = [h for h in history or () if h not in self.catalog]
            if unknown:
                self._load_new_items()  # another worker may have added them
                unknown = [h for h in unknown if h not in self.catalog]
            if unknown:
                raise NotFoundError(f"unknown item(s) in the history: {', '.join(map(repr, unknown[:5]))}")
            seen = list(history or ())
        if ask.explain or (ask.rerank and self.pipeline.needs_llm):
            self._require_llm()
        return _Prepared(ask, seen, disliked)

    def _run(self, prepared: list[_Prepared]) -> list[Recommendations]:
        """The pipeline's lists for prepared asks (one re-ranking call for all), as cards."""
        if not prepared:
            return []
        requests = [ListRequest(history=p.seen, k=p.ask.k, exclude=tuple(sorted(p.disliked)), rerank=p.ask.rerank,
                                explain=p.ask.explain) for p in prepared]
        try:
            with _llm_errors():
                outcomes = self.pipeline.run_many(requests)
        except RecllmError as exc:
            if isinstance(exc, ServiceError):
                raise
            raise ServiceError(str(exc)) from exc
        return [self._cards(p, outcome) for p, outcome in zip(prepared, outcomes, strict=True)]

    def _cards(self, prepared: _Prepared, outcome: Recommendation) -> Recommendations:
        """The list as shown: items with their reasons, run-time items placed, cut to ``k``."""
        ask, seen, disliked = prepared.ask, prepared.seen, prepared.disliked
        ranked = outcome.items
        diagnostics = None
        if outcome.rerank_diagnostics is not None:
            diagnostics = outcome.rerank_diagnostics.to_dict()
            diagnostics.pop("raw_outputs", None)
        reasons: list[tuple[str | None, bool | None]] = [(None, None)] * len(ranked)
        if outcome.explanation_details:
            reasons = [(e.text, not e.fallback_used) for e in outcome.explanation_details]
        entries = list(zip(ranked.items, ranked.scores, reasons, strict=True))
        placed = self.new_items.place([(i, float(s)) for i, s in zip(ranked.items, ranked.scores, strict=True)],
                                      seen, disliked, ask.k, self.config.new_item_slots)
        for new in placed:
            entries.insert(new.position, (new.item, new.score, (new.reason, True)))
        entries = entries[:ask.k]
        items = tuple(self._card(item, float(score), reason, checked) for item, score, (reason, checked) in entries)
        return Recommendations(ask.user, items, ask.rerank, ask.explain, len(seen), diagnostics)

    def rate(self, user: str | None, item: str, *, history: list[str] | None = None) -> float:
        """The LLM's expected rating of ``item`` for a known user or an ad-hoc history."""
        self._dataset_item(item, "rating prediction")
        seen = self.history(user)[0] if user is not None else list(history or [])
        stages = self._require_llm()
        with self._lock, _llm_errors():
            return float(stages.rater.predict(seen, item, user=user))

    def explain(self, user: str, item: str) -> Any:
        """A checked explanation of ``item`` for ``user`` (the grounded template when the model's text fails)."""
        self._dataset_item(item, "an explanation")
        seen, _ = self.history(user)
        stages = self._require_llm()
        with self._lock, _llm_errors():
            return stages.explainer.explain(seen, item)

    def aspects(self, user: str | None, item: str, *, history: list[str] | None = None) -> DecisionReport:
        """Per-aspect match of ``item`` for a known user or an ad-hoc history (liked: the whole history)."""
        self._dataset_item(item, "the aspect breakdown")
        if user is None:
            unknown = [h for h in history or [] if h not in self.data.catalog]
            if unknown:
                raise NotFoundError(f"unknown item(s) in the history: {', '.join(map(repr, unknown[:5]))}")
            return self.analyzer.analyze(list(history or []), item)
        seen, _ = self.history(user)
        return self.analyzer.analyze(seen, item, liked=self.liked(user))

    def compare(self, items: list[str], *, user: str | None = None, history: list[str] | None = None,
                criteria: str | None = None, weights: dict[str, float] | None = None) -> Comparison:
        """Two or three items side by side for a known user or an ad-hoc history, weighed by ``weights`` or by
        the ``criteria`` in words ("mostly the era, a bit the genre")."""
        for item in items:
            self._dataset_item(item, "a comparison")
        if criteria is not None and weights is not None:
            raise ServiceError("give criteria in words or weights, not both")
        if criteria is not None:
            weights = read_criteria(criteria)
            if weights is None:
                raise ServiceError(f"no aspect named in the criteria {criteria!r}; name the era, the genre, "
                                   "similarity, what people like you watch, or popularity")
        if user is not None and history is not None:
            raise ServiceError("give a user or a history, not both")
        try:
            if user is None:
                unknown = [h for h in history or [] if h not in self.data.catalog]
                if unknown:
                    raise NotFoundError(f"unknown item(s) in the history: {', '.join(map(repr, unknown[:5]))}")
                return self.analyzer.compare(list(history or []), items, weights=weights)
            seen, _ = self.history(user)
            return self.analyzer.compare(seen, items, liked=self.liked(user), weights=weights)
        except RecllmError as exc:
            if isinstance(exc, ServiceError):
                raise
            raise ServiceError(str(exc)) from exc

    def liked(self, user: str) -> list[str]:
        """Items the user liked: rated 4 or more in the data (everything, without ratings), then stored likes
        and ratings of 4 or more."""
        ds = self.data.dataset
        out: list[str] = []
        if user in ds.user_vocab:
            u = ds.user_vocab.index(user)
            items = ds.sequence(u)
            if ds.ratings is None:
                out = ds.item_vocab.lookup_ids(items)
            else:
                span = ds.time_order[ds.sequence_indptr[u]:ds.sequence_indptr[u + 1]]
                out = ds.item_vocab.lookup_ids(items[ds.ratings[span] >= 4])
        for event in self.store.feedback(user):
            if event.kind == "like" or (event.kind == "rating" and (event.rating or 0) >= 4):
                out.append(event.item)
        return out

    @cached_property
    def rules(self) -> RuleExtractor:
        """The chat's rule reader, built once (its title patterns take about a second on MovieLens-100K); the
        most-watched version of a title named without a year wins."""
        dataset = self.data.dataset
        popularity = {i: float(dataset.item_popularity[n]) for n, i in enumerate(dataset.item_vocab.ids)}
        return RuleExtractor(self.data.catalog, popularity)

    @cached_property
    def analyzer(self) -> AspectAnalyzer:
        return AspectAnalyzer(self.data, self.retriever)

    def feedback(self, user: str, item: str, kind: str, rating: float | None = None) -> FeedbackRecord:
        """Store feedback (committed before returning); the user's next list reflects it."""
        self.item(item)
        if (kind == "rating") != (rating is not None):
            raise ServiceError("give a rating with kind 'rating', and only then" if rating is not None
                               else "kind 'rating' needs a rating (1 to 5)")
        if rating is not None and self.baseline is not None and not 1.0 <= rating <= 5.0:
            raise ServiceError(f"rating must be between 1 and 5, got {rating}")
        return self.store.add_feedback(user, item, kind, rating)

    # ---- chat --------------------------------------------------------------------------------------
    def chat(self, message: str, *, session_id: str | None = None, user: str | None = None) -> ChatTurnResult:
        """One chat turn: a new session when ``session_id`` is None (for ``user``, or anonymous); the user's
        message, the answer and the new preference state are stored together before this returns. Without a
        working LLM the rule-based reading and the retriever's order answer (noted in the reply)."""
        message = message.strip()
        if not message:
            raise ServiceError("the message is empty")
        if len(message) > self.config.max_message_chars:
            raise PayloadTooLargeError(f"the message has {len(message):,} characters; the limit is "
                                       f"{self.config.max_message_chars:,}")
        if session_id is None:
            session_id = self.store.create_session(user)  # a new visitor's id is recorded as a user
        try:
            record = self.store.session(session_id)
        except StorageError as exc:
            raise NotFoundError(str(exc)) from exc
        if user is not None and record.user != user:
            if record.user is not None:
                raise ServiceError(f"chat session {session_id!r} belongs to another user")
            self.store.claim_session(session_id, user)  # an anonymous session joins the visitor's identity
            record = replace(record, user=user)
        base_history: list[str] = []
        exclude: set[str] = set()
        if record.user is not None:  # the user's data and feedback, read at every turn: likes and dislikes count
            base_history, exclude = self.visitor_history(record.user)
        agent, note = self._agent()
        reply = agent.turn(Preferences.from_dict(record.state), message, base_history=base_history,
                           exclude=sorted(exclude))
        if note:  # the model could not be loaded or reached: the person is told, not only the notes
            sentence = degraded_sentence(reading=self.config.chat_llm_extraction, ordering=self.config.chat_rerank)
            text = reply.text if not sentence or sentence in reply.text else f"{reply.text}\n{sentence}"
            reply = replace(reply, text=text, degraded=bool(sentence),
                            update=replace(reply.update, notes=(*reply.update.notes, note)))
        self.store.add_turn(session_id, "user", message)
        self.store.add_turn(session_id, "assistant", reply.text, reply.payload(), state=reply.state.to_dict())
        return ChatTurnResult(session_id, reply)

    def _agent(self) -> tuple[ChatAgent, str | None]:
        """The chat agent with the LLM stages when they work, else the rule-based reading and the retriever's
        order, with a note saying so; each of the two is built once (per set of stages) and serves every
        conversation (the agent keeps no conversation's state)."""
        stages = None
        note = None
        if self.config.llm != "none":
            try:
                stages = self._require_llm()
                problem = self.llm_problem()  # checked (at most every HEALTH_TTL_S): a dead server is not waited on
                if problem is not None:
                    raise LLMUnavailableError(f"the language model is unavailable: {problem}")
            except LLMUnavailableError as exc:
                stages = None
                note = f"{exc}; rules only, retriever order"
        key = "model" if stages is not None else "rules"
        built = self._chat_agents.get(key)
        if built is not None and built[0] is stages:  # the stages are rebuilt after a failed model comes back
            return built[1], note
        extractor = LLMExtractor(stages.llm, self.data.catalog, rules=self.rules) if stages is not None and \
            self.config.chat_llm_extraction else self.rules
        chat_reranker = stages.reranker if stages is not None else None
        if chat_reranker is None and self.pipeline.reranker is not None and not self.pipeline.needs_llm:
            chat_reranker = self.pipeline.reranker  # a distilled student needs no language model
        reranker = _Locked(chat_reranker, self._lock) if chat_reranker is not None and self.config.chat_rerank \
            else None
        recommender = ChatRecommender(self.data, self.retriever, self.popular, reranker=reranker,
                                      candidates=self.config.candidates, wishes=self.wish_matcher(),
                                      wish_weight=self.config.wish_weight)
        recommender.analyzer = self.analyzer  # share the co-watching matrix
        agent = ChatAgent(recommender, _Locked(extractor, self._lock), k=self.config.chat_items)
        self._chat_agents[key] = (stages, agent)
        return agent, note

    def wish_matcher(self) -> WishMatcher | None:
        """The embedder's item matcher for free-text wishes, built once (a few seconds on MovieLens-100K);
        None when disabled or when the embedder failed to load (the chat then ignores wishes)."""
        if self.config.embedder == "none" or self.embedder_error:
            return None
        with self._embed_lock:
            if self._wishes is None:
                from recllm.llm import create_embedder

                try:
                    embedder = create_embedder(self.config.embedder)
                    self._wishes = WishMatcher(embedder, self.data.catalog, self.data.dataset.item_vocab.ids)
                except (RecllmError, OSError) as exc:
                    self.embedder_error = str(exc)
                    log.warning("embedder unavailable, free-text wishes are ignored: %s", exc)
                    return None
        return self._wishes

    # ---- LLM stages ----------------------------------------------------------------------------------
    @property
    def llm_status(self) -> str:
        """"disabled", "not loaded", "ready" or "unavailable": checked, not remembered (``llm_problem``)."""
        if self.config.llm == "none":
            return "disabled"
        if self._stages is None and not self.llm_error:
            return "not loaded"
        return "ready" if self.llm_problem() is None else "unavailable"

    def llm_metrics(self) -> list[str]:
        """The language model's figures in Prometheus' text format: calls, seconds and the response cache's
        hit rate (nothing while no model is loaded)."""
        if self._stages is None:
            return []
        llm = self._stages.llm
        usage = getattr(getattr(llm, "inner", llm), "usage", llm.usage)
        hits, misses = getattr(llm, "hits", 0), getattr(llm, "misses", 0)
        lines = ["# HELP recllm_llm_calls_total Calls to the language model by kind (cache misses only).",
                 "# TYPE recllm_llm_calls_total counter",
                 f'recllm_llm_calls_total{{kind="generate"}} {usage.generate_calls}',
                 f'recllm_llm_calls_total{{kind="score"}} {usage.score_calls}',
                 "# HELP recllm_llm_seconds_total Seconds spent in the language model by kind.",
                 "# TYPE recllm_llm_seconds_total counter",
                 f'recllm_llm_seconds_total{{kind="generate"}} {usage.generate_seconds:.6f}',
                 f'recllm_llm_seconds_total{{kind="score"}} {usage.score_seconds:.6f}',
                 "# HELP recllm_llm_cache_hit_ratio Share of model calls answered from the response cache.",
                 "# TYPE recllm_llm_cache_hit_ratio gauge",
                 f"recllm_llm_cache_hit_ratio {hits / (hits + misses) if hits + misses else 0.0:.6f}",
                 "# HELP recllm_llm_up Whether the language model answers now (checked).",
                 "# TYPE recllm_llm_up gauge", f"recllm_llm_up {int(self.llm_problem() is None)}"]
        return lines

    def llm_problem(self) -> str | None:
        """Why the language model cannot answer now (None when it can): a stage that failed to build is tried
        again after ``LLM_RETRY_S``, a built one asks its model (a server-backed model its server), at most once
        every ``HEALTH_TTL_S``."""
        if self._stages is None:
            if self.llm_error and time.monotonic() - self._llm_failed_at >= LLM_RETRY_S:
                with suppress(LLMUnavailableError):
                    self._require_llm(retry=True)
            return self.llm_error
        checked_at, problem = self._health
        if time.monotonic() - checked_at >= HEALTH_TTL_S:
            problem = self._stages.llm.health(timeout=HEALTH_TIMEOUT_S)
            self._health = (time.monotonic(), problem)
        return problem

    def load_llm(self) -> None:
        """Build the LLM stages now (the service does this at start-up); failures are kept, not raised."""
        try:
            self._require_llm()
        except LLMUnavailableError as exc:
            log.warning("LLM unavailable: %s", exc)

    def warm(self) -> float | None:
        """Run one re-ranked, explained list (the dataset's first user), then one re-ranked list at the default
        ``k`` (its second user), so that the model's first-call costs (weights paged in, kernels chosen, buffers
        grown) are paid at start, not by the first person; returns the seconds it took, None when there is no
        model to warm. A failure is logged, never raised. The second list is there because the first re-ranked
        list after an explained one still cost about 1.5x the next (5.7 s against 3.8 s, 2 cores). The server
        runs this on the model queue's thread, where requests run (``recllm.serve.app``)."""
        if self.config.llm == "none" or self._stages is None:
            return None
        started = time.perf_counter()
        vocab = self.data.dataset.user_vocab
        try:
            self.recommend(vocab.id(0), k=5, rerank=True, explain=True)
            self.recommend(vocab.id(min(1, len(vocab) - 1)), k=DEFAULT_K, rerank=True)
        except RecllmError as exc:
            log.warning("warming the language model failed: %s", exc)
            return None
        return time.perf_counter() - started

    def _require_llm(self, *, retry: bool = False) -> LLMStages:
        """The LLM stages, built on first use; a failed build is remembered (and answered at once) until
        ``retry`` or ``LLM_RETRY_S`` seconds have passed, so a model server that comes back is used again."""
        if self.config.llm == "none":
            raise LLMUnavailableError("this service runs without a language model (llm = 'none')")
        if self._stages is not None:
            return self._stages
        if self.llm_error and not retry and time.monotonic() - self._llm_failed_at < LLM_RETRY_S:
            raise LLMUnavailableError(f"the language model is unavailable: {self.llm_error}")
        with self._lock:
            if self._stages is None:
                try:
                    self._stages = self._build_stages()
                    self.llm_error = None
                except (RecllmError, OSError) as exc:
                    self.llm_error = str(exc)
                    self._llm_failed_at = time.monotonic()
                    raise LLMUnavailableError(f"the language model is unavailable: {exc}") from exc
        return self._stages

    def _build_stages(self) -> LLMStages:
        from recllm.llm.cache import CachedLLM

        return self.pipeline.attach_llm(self._llm or self._budgeted_llm(),
                                        wrap=lambda model: CachedLLM(model, self.store), rating_fallback=self.baseline)

    def _budgeted_llm(self) -> LLM | None:
        """For a model server named without its own ``timeout``: the model with the service's time budget per
        call (``llm_timeout_s``, no retry), so no request waits long on a server that hangs. None otherwise
        (the pipeline builds the models its specs name)."""
        pipeline = self.config.pipeline
        specs = {pipeline.explainer_spec} | ({pipeline.reranker_llm} if pipeline.reranker is not None else set())
        if len(specs) != 1:
            return None
        spec = specs.pop()
        if not spec.startswith("openai:") or "timeout=" in spec:
            return None
        from recllm.llm import create_llm

        return create_llm(spec, timeout=self.config.llm_timeout_s, max_retries=0)

    def _card(self, item: str, score: float, reason: str | None, checked: bool | None) -> RecommendedItem:
        facts = self.catalog[item]
        return RecommendedItem(item, facts.display_title, facts.year, tuple(facts.genres), float(score), reason,
                               checked)


def _item_of(record: ItemRecord) -> Item:
    return Item(record.id, record.title, record.year, record.genres,
                {"description": record.description} if record.description else {})


@dataclass(frozen=True)
class ChatTurnResult:
    session_id: str
    reply: ChatReply


class _Locked:
    """A proxy whose method calls hold the service's LLM lock: one request on the model at a time."""

    def __init__(self, inner: Any, lock: AbstractContextManager[Any]) -> None:
        self._inner, self._lock = inner, lock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


@contextmanager
def _llm_errors() -> Iterator[None]:
    """Turns an LLM failure during a call into LLMUnavailableError (503), naming what failed."""
    try:
        yield
    except LLMError as exc:
        raise LLMUnavailableError(f"the language model failed: {exc}") from exc
