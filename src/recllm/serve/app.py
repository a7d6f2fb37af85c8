"""The HTTP API: a FastAPI app factory over ``Service``. Nothing is built at import time; ``create_app``
builds the service when the server starts (or takes a ready one), and every failure is a JSON error with a
clear message: 4xx for bad requests, 503 when the language model or database is unavailable, never a
traceback."""

from __future__ import annotations

import functools
import gc
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from recllm.errors import RecllmError
from recllm.serve.list_cache import ListCache
from recllm.serve.llm_queue import LLMQueue
from recllm.serve.operations import Metrics, Operations
from recllm.serve.service import (
    DEFAULT_K,
    ListAsk,
    NotFoundError,
    Recommendations,
    Service,
    ServiceConfig,
    ServiceError,
)
from recllm.serve.storage import StorageError, Store

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
STATIC = Path(__file__).resolve().parent / "static"
ItemId = Annotated[str, Field(min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemOut(BaseModel):
    item: str
    title: str
    year: int | None
    genres: list[str]


class NewItemRequest(_Strict):
    title: str = Field(min_length=1, max_length=500)
    item: str | None = Field(default=None, min_length=1, max_length=200,
                             description="the new item's id (omit: one is made up)")
    year: int | None = Field(default=None, ge=1800, le=2200)
    genres: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=30)
    description: str = Field(default="", max_length=5000)


class RecommendedOut(ItemOut):
    score: float
    reason: str | None = None
    reason_checked: bool | None = Field(default=None, description="True: the model's text passed the check; "
                                        "False: the grounded template was shown instead")


class RecommendationsOut(BaseModel):
    user: str | None
    items: list[RecommendedOut]
    reranked: bool
    explained: bool
    history_length: int
    diagnostics: dict[str, Any] | None = None


class HistoryRequest(_Strict):
    history: list[str] = Field(max_length=2000, description="item ids, oldest first (may be empty: cold start)")
    k: int = Field(default=DEFAULT_K, ge=1)
    rerank: bool = False
    explain: bool = False


class RatingRequest(_Strict):
    item: ItemId
    user: str | None = Field(default=None, max_length=200)
    history: list[str] | None = Field(default=None, max_length=2000)


class RatingOut(BaseModel):
    user: str | None
    item: str
    rating: float


class ExplanationOut(BaseModel):
    user: str
    item: str
    text: str
    grounded: bool
    fallback_used: bool
    cited: list[str]
    violations: list[str]


class AspectOut(BaseModel):
    name: str
    score: float
    reason: str
    weight: float


class DecisionOut(BaseModel):
    item: str
    title: str
    score: float
    aspects: list[AspectOut]
    pros: list[str]
    cons: list[str]


class AspectsRequest(_Strict):
    item: ItemId
    history: list[str] = Field(max_length=2000)


class CompareRequest(_Strict):
    items: list[ItemId] = Field(min_length=2, max_length=3)
    user: str | None = Field(default=None, min_length=1, max_length=200)
    history: list[str] | None = Field(default=None, max_length=2000)
    criteria: str | None = Field(default=None, min_length=1, max_length=500,
                                 description='what matters, in words: "mostly the era, a bit the genre"')
    weights: dict[str, float] | None = Field(default=None, description="aspect weights: genre, era, similar, "
                                             "collaborative, popularity")


class LeaderOut(BaseModel):
    aspect: str
    items: list[str]


class CompareOut(BaseModel):
    items: list[DecisionOut]
    leaders: list[LeaderOut]
    overall: list[str]


class ChatRequest(_Strict):
    message: str = Field(min_length=1, description="what the user says (the service's max_message_chars applies)")
    session_id: str | None = Field(default=None, max_length=64, description="omit to start a new conversation")
    user: str | None = Field(default=None, min_length=1, max_length=200, description="the user (a page visitor's id "
                             "too): their history and feedback count, and the session is theirs")


class ChatItemOut(ItemOut):
    reason: str


class ChatOut(BaseModel):
    session_id: str
    reply: str
    action: Literal["ask", "recommend", "no-match", "compare", "answer"]
    items: list[ChatItemOut]
    state: dict[str, Any]
    source: str
    reranked: bool
    degraded: bool
    notes: list[str]
    unknown_titles: list[str]


class ChatTurnOut(BaseModel):
    position: int
    role: str
    text: str
    payload: dict[str, Any]
    created_at: str


class ChatSessionOut(BaseModel):
    session_id: str
    user: str | None
    state: dict[str, Any]
    turns: list[ChatTurnOut]


class FeedbackRequest(_Strict):
    user: str = Field(min_length=1, max_length=200)
    item: ItemId
    kind: Literal["like", "dislike", "watched", "rating"]
    rating: float | None = Field(default=None, ge=1, le=5)


class FeedbackOut(BaseModel):
    id: int
    user: str
    item: str
    kind: str
    rating: float | None
    created_at: str


class HealthOut(BaseModel):
    status: str
    dataset: str
    users: int
    items: int
    llm: str
    llm_problem: str | None
    database: str
    schema_version: int


def create_app(service: Service | None = None, *, config: ServiceConfig | None = None, db_url: str | None = None,
               load_llm: bool = True, on_ready: Callable[[Service], None] | None = None,
               settle: bool = False) -> FastAPI:
    """The API app. Without ``service`` it starts one from ``config`` and ``db_url`` when the server starts
    (loading the LLM and the embedder then too, unless ``load_llm`` is False); ``on_ready`` is called once
    the service can answer (the CLI prints the page's address then). ``settle``: the app owns its process
    (``recllm serve``), so ``settle_heap`` runs once it is ready."""
    state: dict[str, Service] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if service is not None:
            state["service"] = service
        else:
            started = Service.start(config, Store(db_url))
            if load_llm:
                started.load_llm()
                started.wish_matcher()
            started.new_items  # noqa: B018  (loads the items added at run time, with their text vectors)
            if load_llm and started.config.warm_llm:
                # on the model's own thread, where requests will run: a thread's first model calls pay for its
                # own allocator arena and thread pool, which a warm-up on this thread would leave unpaid
                seconds = await queue.run(started.warm)
                if seconds is not None:
                    log.info("language model warmed in %.1f s", seconds)
            state["service"] = started
        log.info("service ready: %s, LLM %s, database %s", state["service"].data.name,
                 state["service"].llm_status, state["service"].store.safe_url)
        if on_ready is not None:
            on_ready(state["service"])
        if settle:
            settle_heap()
        yield
        queue.close()
        if service is None:
            state["service"].store.close()

    app = FastAPI(title="recllm", version="0.1", lifespan=lifespan,
                  description="Recommendations with classic retrievers and LLM re-ranking, explanation and "
                              "rating; feedback changes a user's next list at once.")

    def svc() -> Service:
        return state["service"]

    _install_error_handlers(app)

    settings = service.config if service is not None else (config or ServiceConfig())
    metrics = Metrics()
    lists = ListCache(settings.list_cache_size)
    queue = LLMQueue(settings.llm_queue)
    api_key = os.environ.get("RECLLM_API_KEY") or settings.api_key
    app.add_middleware(Operations, metrics=metrics, max_body=MAX_BODY_BYTES, api_key=api_key, protected=_protected)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["content-type", "authorization", "x-api-key"])

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        extra = [*lists.metrics(), *queue.metrics(), *(svc().llm_metrics() if "service" in state else []),
                 *gc_metrics()]
        return Response(metrics.render(extra), media_type="text/plain; version=0.0.4")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/audit", include_in_schema=False)
    def audit_page() -> Response:
        """The latest ``recllm audit`` report of this service's pipeline on its dataset (its retriever with its
        re-ranker when one was audited, else the retriever's), as written (a static page: nothing is computed per
        request)."""
        return _audit_file(".html", "text/html; charset=utf-8")

    @app.get("/audit.json", include_in_schema=False)
    def audit_json() -> Response:
        return _audit_file(".json", "application/json")

    def _audit_file(suffix: str, media_type: str) -> Response:
        from recllm.eval.audit_report import audit_names, published_audit

        dataset, model = svc().data.name, settings.pipeline.retriever.model
        reranker = settings.pipeline.reranker.name if settings.pipeline.reranker is not None else None
        paths = [published_audit(dataset, name, suffix) for name in audit_names(model, reranker)]
        for path in paths:
            try:
                body = path.read_bytes()
            except FileNotFoundError:
                continue
            return Response(body, media_type=media_type, headers={"cache-control": "no-cache"})
        with_reranker = f" --rerank {reranker}" if reranker else ""
        raise NotFoundError(f"no audit of retriever '{model}'{' with re-ranker ' + repr(reranker) if reranker else ''} "
                            f"on {dataset} has been published; run `recllm audit --dataset {settings.pipeline.dataset} "
                            f"--models {model}{with_reranker}` (it publishes its report to {paths[0].parent})")

    @app.get("/health", response_model=HealthOut)
    def health() -> HealthOut:
        s = svc()
        llm = s.llm_status  # checked now (a server-backed model is asked), not remembered from start-up
        return HealthOut(status="degraded" if llm == "unavailable" else "ok", dataset=s.data.name,
                         users=s.data.dataset.n_users, items=len(s.catalog), llm=llm,
                         llm_problem=s.llm_problem() if llm == "unavailable" else None, database=s.store.dialect,
                         schema_version=s.store.version)

    @app.get("/items/search", response_model=list[ItemOut])
    def search(q: str = Query(min_length=1, max_length=200), limit: int = Query(default=10, ge=1, le=50)
               ) -> list[ItemOut]:
        return [_item(i) for i in svc().search(q, limit)]

    @app.get("/items/{item}", response_model=ItemOut)
    def item(item: str) -> ItemOut:
        return _item(svc().item(item))

    @app.get("/users/{user}/recommendations", response_model=RecommendationsOut)
    async def recommend_user(user: str, k: int = Query(default=DEFAULT_K, ge=1), rerank: bool = False,
                             explain: bool = False) -> Response:
        """A known user's list: sent from the worker's list cache while the user's feedback and the catalog
        are unchanged (one indexed read checks), computed otherwise (on the model's queue when it needs the
        model, off the event loop in any case)."""
        s = svc()
        version = s.list_version(user)
        key = (user, k, rerank, explain)
        body = lists.get(key, version)
        if body is None:
            if rerank and not explain:
                result = await _reranked(s, ListAsk(user, k=k, rerank=True))
            elif explain:
                result = await queue.run(s.recommend, user, k=k, rerank=rerank, explain=explain)
            else:
                result = await run_in_threadpool(s.recommend, user, k=k)
            body = _recommendations_json(result)
            lists.put(key, version, body)
        return Response(body, media_type="application/json")

    @app.post("/recommendations", response_model=RecommendationsOut)
    async def recommend_history(body: HistoryRequest) -> Response:
        s = svc()
        if body.rerank and not body.explain:
            result = await _reranked(s, ListAsk(history=tuple(body.history), k=body.k, rerank=True))
        else:
            call = functools.partial(s.recommend, history=body.history, k=body.k, rerank=body.rerank,
                                     explain=body.explain)
            result = await (queue.run(call) if body.explain else run_in_threadpool(call))
        return Response(_recommendations_json(result), media_type="application/json")

    async def _reranked(s: Service, ask: ListAsk) -> Recommendations:
        """A re-ranked list from the model's queue, in one model call with the other users' lists waiting
        there (``Service.list_batch`` at most)."""
        return cast(Recommendations, await queue.run_batched("lists", s.recommend_many, ask, max_batch=s.list_batch))

    @app.post("/ratings/predict", response_model=RatingOut)
    async def rate(body: RatingRequest) -> RatingOut:
        if (body.user is None) == (body.history is None):
            raise ServiceError("give exactly one of 'user' or 'history'")
        rating = await queue.run(svc().rate, body.user, body.item, history=body.history)
        return RatingOut(user=body.user, item=body.item, rating=rating)

    @app.get("/users/{user}/explanations/{item}", response_model=ExplanationOut)
    async def explain(user: str, item: str) -> ExplanationOut:
        e = await queue.run(svc().explain, user, item)
        return ExplanationOut(user=user, item=item, text=e.text, grounded=e.grounded, fallback_used=e.fallback_used,
                              cited=list(e.cited), violations=list(e.violations))

    @app.get("/users/{user}/aspects/{item}", response_model=DecisionOut)
    def aspects(user: str, item: str) -> DecisionOut:
        return _decision(svc().aspects(user, item))

    @app.post("/aspects", response_model=DecisionOut)
    def aspects_history(body: AspectsRequest) -> DecisionOut:
        return _decision(svc().aspects(None, body.item, history=body.history))

    @app.post("/compare", response_model=CompareOut)
    def compare(body: CompareRequest) -> CompareOut:
        result = svc().compare(list(body.items), user=body.user, history=body.history, criteria=body.criteria,
                               weights=body.weights)
        return CompareOut(items=[_decision(r) for r in result.reports], overall=list(result.overall),
                          leaders=[LeaderOut(aspect=a, items=list(i)) for a, i in result.leaders])

    @app.post("/chat", response_model=ChatOut)
    def chat(body: ChatRequest) -> ChatOut:
        result = svc().chat(body.message, session_id=body.session_id, user=body.user)
        r = result.reply
        return ChatOut(session_id=result.session_id, reply=r.text, action=r.action, state=r.state.to_dict(),
                       source=r.update.source, reranked=r.reranked, degraded=r.degraded, notes=list(r.update.notes),
                       unknown_titles=list(r.update.unknown_titles),
                       items=[ChatItemOut(item=i.item, title=i.title, year=i.year, genres=list(i.genres),
                                          reason=i.reason) for i in r.items])

    @app.get("/chat/{session_id}", response_model=ChatSessionOut)
    def chat_session(session_id: str) -> ChatSessionOut:
        try:
            record = svc().store.session(session_id)
        except StorageError as exc:
            raise NotFoundError(str(exc)) from exc
        return ChatSessionOut(session_id=record.id, user=record.user, state=record.state,
                              turns=[ChatTurnOut(position=t.position, role=t.role, text=t.text, payload=t.payload,
                                                 created_at=t.created_at.isoformat()) for t in record.turns])

    @app.post("/items", response_model=ItemOut, status_code=201)
    def add_item(body: NewItemRequest) -> ItemOut:
        """Add an item to the catalog: stored at once, searchable, and recommended from its text without
        refitting (409 when the id exists)."""
        return _item(svc().add_item(body.title, item=body.item, year=body.year, genres=body.genres,
                                    description=body.description))

    @app.post("/feedback", response_model=FeedbackOut, status_code=201)
    def feedback(body: FeedbackRequest) -> FeedbackOut:
        return _feedback(svc().feedback(body.user, body.item, body.kind, body.rating))

    @app.get("/users/{user}/feedback", response_model=list[FeedbackOut])
    def user_feedback(user: str) -> list[FeedbackOut]:
        svc().history(user)  # 404 for an unknown user
        return [_feedback(f) for f in svc().store.feedback(user)]

    return app


GC_THRESHOLDS = (10_000, 20, 20)
"""The cycle collector's thresholds in a server process (Python's are 700, 10, 10): young collections run
after 10,000 new container objects instead of 700, so requests meet them about 14 times less often."""


def settle_heap() -> None:
    """For a server process once it is ready: what start-up loaded (data, models, catalog, routes) is collected
    once and frozen out of the cycle collector's reach (``gc.freeze``), and ``GC_THRESHOLDS`` apply. Under load a
    full collection walked all of it and paused every request in flight for up to 0.4 s; in runs by hand (2
    workers, asyncio, 200 connections) the p99 went from 0.31-0.39 s to 0.10-0.15 s with it."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def gc_metrics() -> list[str]:
    """The cycle collector's counters in Prometheus' format: collections by generation and frozen objects."""
    lines = ["# HELP python_gc_collections_total Cycle-collector runs by generation.",
             "# TYPE python_gc_collections_total counter"]
    for generation, stats in enumerate(gc.get_stats()):
        lines.append(f'python_gc_collections_total{{generation="{generation}"}} {stats["collections"]}')
    return [*lines, "# HELP python_gc_frozen_objects Objects frozen out of the cycle collector at start-up.",
            "# TYPE python_gc_frozen_objects gauge", f"python_gc_frozen_objects {gc.get_freeze_count()}"]


WORKER_SETTINGS = "RECLLM_SERVE_WORKER"
"""The environment variable through which ``recllm serve --workers N`` hands each worker its settings."""


def worker_environment(config: ServiceConfig, db_url: str | None, workers: int) -> dict[str, str]:
    """What a worker process needs in its environment: the settings and database URL (read by ``worker_app``)
    and, unless the operator set them, a thread count of cores / workers for torch and the BLAS libraries, so
    that N workers do not each start one thread per core."""
    env = {WORKER_SETTINGS: json.dumps({"config": config.model_dump(mode="json"), "db": db_url})}
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        if name not in os.environ:
            env[name] = threads
    return env


def worker_app() -> FastAPI:
    """The app of one worker process of ``recllm serve --workers N`` (a uvicorn factory): its settings come
    from ``worker_environment``."""
    raw = os.environ.get(WORKER_SETTINGS)
    if raw is None:
        raise RecllmError(f"{WORKER_SETTINGS} is not set: worker_app is started by `recllm serve --workers N`")
    spec = json.loads(raw)

    def ready(service: Service) -> None:
        print(f"recllm worker {os.getpid()} is ready (LLM {service.llm_status})", flush=True)

    return create_app(config=ServiceConfig.model_validate(spec["config"]), db_url=spec["db"], on_ready=ready,
                      settle=True)


def _protected(method: str, path: str) -> bool:
    """Routes that need the API key when one is set: writes and admin routes."""
    return (method == "POST" and path in ("/feedback", "/items")) or path == "/metrics"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return _error(exc.status, str(exc), headers=exc.headers)

    @app.exception_handler(StorageError)
    async def storage_error(_: Request, exc: StorageError) -> JSONResponse:
        return _error(503, f"storage: {exc}")

    @app.exception_handler(RecllmError)
    async def recllm_error(_: Request, exc: RecllmError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        """The framework's own refusals (no such route, wrong method, a body that does not parse) in the
        same shape as every other error."""
        return _error(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return _error(422, "; ".join(parts), details=[_json_safe({k: v for k, v in e.items() if k != "ctx"})
                                                      for e in exc.errors()])

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")


def _json_safe(value: Any) -> Any:
    """``value`` with anything JSON cannot hold (bytes of a body that was not JSON, say) as its repr."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)[:200]


def _error(status: int, message: str, details: Any = None, headers: Mapping[str, str] | None = None
           ) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(status_code=status, content=body, headers=dict(headers or {}))


def _item(item: Any) -> ItemOut:
    return ItemOut(item=item.id, title=item.display_title, year=item.year, genres=list(item.genres))


def _recommendations_json(r: Recommendations) -> bytes:
    """``RecommendationsOut`` as JSON, written directly (the hot path: no model validation per request; the
    route's response model still documents it, and a test checks the two agree)."""
    return orjson.dumps({
        "user": r.user, "reranked": r.reranked, "explained": r.explained, "history_length": r.history_length,
        "diagnostics": r.diagnostics,
        "items": [{"item": i.item, "title": i.title, "year": i.year, "genres": list(i.genres), "score": i.score,
                   "reason": i.reason, "reason_checked": i.reason_checked} for i in r.items]},
        option=orjson.OPT_SERIALIZE_NUMPY)


def _decision(d: Any) -> DecisionOut:
    return DecisionOut(item=d.item, title=d.title, score=d.score, pros=list(d.pros), cons=list(d.cons),
                       aspects=[AspectOut(name=a.name, score=a.score, reason=a.reason, weight=a.weight)
                                for a in d.aspects])


def _feedback(f: Any) -> FeedbackOut:
    return FeedbackOut(id=f.id, user=f.user, item=f.item, kind=f.kind, rating=f.rating,
                       created_at=f.created_at.isoformat())
