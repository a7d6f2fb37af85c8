"""A service that keeps up (issue 16): per-user lists cached and made stale by that user's feedback or a new
item (whichever worker wrote it), the model's bounded queue (503 with Retry-After when full, retrieval never
behind it), the JSON written on the hot path agreeing with the documented schema, and `--workers N`."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from fakes import ScriptedLLM
from recllm.data import DataBundle
from recllm.llm.base import Completion, GenerationRequest
from recllm.pipeline import PipelineConfig, RetrieverConfig
from recllm.serve.app import RecommendationsOut
from recllm.serve.list_cache import ListCache
from recllm.serve.llm_queue import LLMQueue, QueueFullError
from recllm.serve.service import Service, ServiceConfig
from recllm.serve.storage import Store
from servers import free_port, running_server, serving_in_process


def _config(**settings: object) -> ServiceConfig:
    return ServiceConfig(pipeline=PipelineConfig(retriever=RetrieverConfig(params={"l2": 100.0}), llm="none",
                                                 reranker=None), embedder="none", **settings)  # type: ignore[arg-type]


@contextmanager
def serving(data: DataBundle, db: Path, **settings: object) -> Iterator[httpx.Client]:
    service = Service.start(_config(**settings), Store(f"sqlite:///{db}"), data=data)
    with serving_in_process(service) as client:
        yield client


def _metric(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{"))
    return float(line.rsplit(" ", 1)[1])


# ---- the list cache ------------------------------------------------------------------------------------
def test_list_cache_hits_only_at_the_same_version_and_drops_the_least_recent():
    cache = ListCache(2)
    cache.put("a", (1, 0), b"A")
    cache.put("b", (1, 0), b"B")
    assert cache.get("a", (1, 0)) == b"A"
    assert cache.get("a", (2, 0)) is None  # the user's feedback moved on
    assert cache.get("a", (1, 1)) is None  # an item was added
    cache.put("c", (1, 0), b"C")  # "b" was used least recently
    assert cache.get("b", (1, 0)) is None and cache.get("a", (1, 0)) == b"A" and cache.get("c", (1, 0)) == b"C"
    assert (cache.hits, cache.misses) == (3, 3)
    off = ListCache(0)
    off.put("a", 1, b"A")
    assert off.get("a", 1) is None and len(off) == 0
    with pytest.raises(ValueError, match="0 or more"):
        ListCache(-1)


def test_a_cached_list_is_served_until_that_users_feedback_changes_it(ml100k: DataBundle, tmp_path: Path):
    with serving(ml100k, tmp_path / "s.sqlite") as api:
        first = api.get("/users/196/recommendations", params={"k": 5})
        again = api.get("/users/196/recommendations", params={"k": 5})
        other = api.get("/users/186/recommendations", params={"k": 5})
        assert first.status_code == again.status_code == other.status_code == 200
        assert first.content == again.content
        metrics = api.get("/metrics").text
        assert _metric(metrics, 'recllm_list_cache_requests_total{result="hit"}') == 1
        top = first.json()["items"][0]["item"]
        assert api.post("/feedback", json={"user": "196", "item": top, "kind": "dislike"}).status_code == 201
        after = api.get("/users/196/recommendations", params={"k": 5}).json()
        assert top not in [i["item"] for i in after["items"]]  # at once, not after the cache ages
        assert api.get("/users/186/recommendations", params={"k": 5}).content == other.content
        liked = after["items"][0]["item"]
        assert api.post("/feedback", json={"user": "196", "item": liked, "kind": "like"}).status_code == 201
        latest = api.get("/users/196/recommendations", params={"k": 5}).json()
        assert latest["history_length"] == after["history_length"] + 1
        assert liked not in [i["item"] for i in latest["items"]]  # now seen
        assert api.get("/users/nobody-at-all/recommendations").status_code == 404


def test_the_hot_path_json_matches_the_documented_schema(ml100k: DataBundle, tmp_path: Path):
    with serving(ml100k, tmp_path / "s.sqlite") as api:
        body = api.get("/users/196/recommendations", params={"k": 4}).json()
        posted = api.post("/recommendations", json={"history": ["50", "172"], "k": 4}).json()
        schema = api.get("/openapi.json").json()
    for answer in (body, posted):
        parsed = RecommendationsOut.model_validate(answer)
        assert parsed.model_dump(mode="json") == answer  # no field missing, none extra, same types
        assert len(parsed.items) == 4
    documented = schema["paths"]["/users/{user}/recommendations"]["get"]["responses"]["200"]["content"]
    assert documented["application/json"]["schema"]["$ref"].endswith("/RecommendationsOut")


def test_feedback_and_items_written_by_one_worker_are_seen_by_another(ml100k: DataBundle, tmp_path: Path):
    """Two service processes' worth of state on one database (two in-process servers here): what one writes,
    the other's next answer reflects, cached list or not."""
    db = tmp_path / "shared.sqlite"
    with ExitStack() as stack:
        one = stack.enter_context(serving(ml100k, db))
        two = stack.enter_context(serving(ml100k, db))
        before = two.get("/users/196/recommendations", params={"k": 5}).json()
        top = before["items"][0]["item"]
        assert one.post("/feedback", json={"user": "196", "item": top, "kind": "dislike"}).status_code == 201
        after = two.get("/users/196/recommendations", params={"k": 5}).json()
        assert top not in [i["item"] for i in after["items"]]
        added = one.post("/items", json={"title": "Quiet Orbit", "item": "orbit-1", "year": 2024,
                                         "genres": ["Sci-Fi"]})
        assert added.status_code == 201
        assert two.get("/items/orbit-1").json()["title"] == "Quiet Orbit"
        assert [i["item"] for i in two.get("/items/search", params={"q": "quiet orb"}).json()] == ["orbit-1"]
        assert two.post("/recommendations", json={"history": ["orbit-1"], "k": 3}).status_code == 200
        duplicate = two.post("/items", json={"title": "Again", "item": "orbit-1"})
        assert duplicate.status_code == 409


# ---- the model's queue ---------------------------------------------------------------------------------
def test_the_queue_refuses_beyond_its_limit_and_counts_it():
    release = threading.Event()

    async def scenario() -> tuple[str, str]:
        queue = LLMQueue(1, retry_after_s=7)
        first = asyncio.ensure_future(queue.run(lambda: release.wait(10) and "done"))
        await asyncio.sleep(0.05)
        assert queue.pending == 1
        with pytest.raises(QueueFullError, match="limit is 1") as refused:
            await queue.run(lambda: "never")
        assert refused.value.retry_after_s == 7 and refused.value.status == 503
        release.set()
        done = await first
        later = await queue.run(lambda: "later")
        assert queue.pending == 0 and queue.rejected == 1
        assert "recllm_llm_queue_rejected_total 1" in queue.metrics()
        queue.close()
        return done, later

    assert asyncio.run(scenario()) == ("done", "later")
    with pytest.raises(ValueError, match="at least 1"):
        LLMQueue(0)


class _HeldLLM(ScriptedLLM):
    """Answers every generation with one text, but only once ``release`` is set."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__([])
        self.release, self.started = release, threading.Event()

    def _generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        self.started.set()
        assert self.release.wait(30), "the test never released the model"
        return [Completion(text="A fine pick.", finish_reason="stop", prompt_tokens=10, completion_tokens=3)
                for _ in requests]


def test_model_requests_beyond_the_queue_get_503_while_retrieval_goes_on(ml100k: DataBundle, tmp_path: Path):
    release = threading.Event()
    llm = _HeldLLM(release)
    config = ServiceConfig(pipeline=PipelineConfig(retriever=RetrieverConfig(params={"l2": 100.0}), llm="hf",
                                                   reranker=None), embedder="none", llm_queue=1, warm_llm=False)
    service = Service.start(config, Store(f"sqlite:///{tmp_path / 's.sqlite'}"), data=ml100k, llm=llm)
    with serving_in_process(service) as api, httpx.Client(base_url=str(api.base_url), timeout=60) as other:
        outcome: dict[str, httpx.Response] = {}
        waiting = threading.Thread(target=lambda: outcome.setdefault(
            "explained", other.get("/users/196/recommendations", params={"k": 2, "explain": "true"})))
        waiting.start()
        assert llm.started.wait(30)
        refused = api.get("/users/186/recommendations", params={"k": 2, "explain": "true"})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert "busy" in refused.json()["error"]
        started = time.perf_counter()
        plain = api.get("/users/22/recommendations", params={"k": 2})
        assert plain.status_code == 200 and time.perf_counter() - started < 5  # not behind the model
        assert _metric(api.get("/metrics").text, "recllm_llm_queue_depth") == 1
        release.set()
        waiting.join(60)
        assert outcome["explained"].status_code == 200 and outcome["explained"].json()["explained"]


# ---- worker processes -----------------------------------------------------------------------------------
def test_serve_with_two_workers_answers_and_shares_feedback(tmp_path: Path):
    config = tmp_path / "service.toml"
    config.write_text('[service]\nembedder = "none"\n')
    port = free_port()
    command = [sys.executable, "-m", "recllm", "serve", "--port", str(port), "--workers", "2", "--config",
               str(config), "--llm", "none", "--db", f"sqlite:///{tmp_path / 'w.sqlite'}"]
    with running_server(command, port, timeout=240) as base:
        lists = []
        for _ in range(6):  # fresh connections, so both workers answer some
            with httpx.Client(base_url=base, timeout=30) as api:
                lists.append(api.get("/users/196/recommendations", params={"k": 5}).json()["items"])
        assert all(items == lists[0] for items in lists)
        top = lists[0][0]["item"]
        with httpx.Client(base_url=base, timeout=30) as api:
            assert api.post("/feedback", json={"user": "196", "item": top, "kind": "dislike"}).status_code == 201
        for _ in range(6):
            with httpx.Client(base_url=base, timeout=30) as api:
                items = api.get("/users/196/recommendations", params={"k": 5}).json()["items"]
                frozen = _metric(api.get("/metrics").text, "python_gc_frozen_objects")
            assert top not in [i["item"] for i in items]
            assert frozen > 10_000  # each worker settled its heap once ready (app.settle_heap)


def test_serve_runs_uvicorn_on_the_asyncio_loop_and_settles_the_heap(tmp_path: Path, monkeypatch):
    """`recllm serve` hands uvicorn the measured settings (the asyncio loop: uvloop starved connections at 200
    concurrent ones) for one worker and for several, and asks the app to settle its heap once ready."""
    import os

    import uvicorn
    from typer.testing import CliRunner

    import recllm.serve.app as app_module
    from recllm.cli import app as cli

    calls: list[tuple[tuple[object, ...], dict[str, object]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    settled: list[bool] = []
    real_create_app = app_module.create_app
    monkeypatch.setattr(app_module, "create_app",
                        lambda **kwargs: settled.append(kwargs["settle"]) or real_create_app(**kwargs))
    monkeypatch.setattr(os, "environ", os.environ.copy())  # the workers' settings go into the environment
    db = f"sqlite:///{tmp_path / 's.sqlite'}"
    for options in (["--workers", "1"], ["--workers", "2"], ["--loop", "uvloop"]):
        result = CliRunner().invoke(cli, ["serve", "--llm", "none", "--db", db, "--port", "8999", *options])
        assert result.exit_code == 0, result.output
    (one, single), (many, several), (_, chosen) = calls
    assert chosen["loop"] == "uvloop" and settled == [True, True]  # both single-process runs built a settling app
    assert single["loop"] == several["loop"] == "asyncio" and single["timeout_keep_alive"] == 30
    assert one[0].__class__.__name__ == "FastAPI"
    assert many == ("recllm.serve.app:worker_app",) and several["factory"] is True and several["workers"] == 2


def test_settle_heap_freezes_start_up_objects_in_its_own_process():
    import subprocess

    code = ("import gc; from recllm.serve.app import settle_heap, gc_metrics, GC_THRESHOLDS; settle_heap(); "
            "assert gc.get_threshold() == GC_THRESHOLDS, gc.get_threshold(); "
            "print(next(l for l in gc_metrics() if l.startswith('python_gc_frozen_objects ')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(done.stdout.split()[-1]) > 10_000  # everything imported so far


def test_warming_runs_an_explained_list_then_a_plain_re_ranked_one(ml100k: DataBundle, tmp_path: Path, monkeypatch):
    """The start-up warm-up takes the paths a first person takes: an explained list, then a re-ranked list at the
    default k (the first plain re-ranked list after an explained one was measured 1.5x slower than the next)."""
    from recllm.pipeline import RerankerConfig
    from recllm.serve.service import DEFAULT_K

    config = ServiceConfig(pipeline=PipelineConfig(retriever=RetrieverConfig(params={"l2": 100.0}), llm="hf",
                                                   reranker=RerankerConfig(name="listwise", candidates=5)),
                           embedder="none", warm_llm=False)
    service = Service.start(config, Store(f"sqlite:///{tmp_path / 's.sqlite'}"), data=ml100k,
                            llm=ScriptedLLM(["[2] > [1]"] * 40))
    assert service.warm() is None  # no model loaded yet: nothing to warm
    service.load_llm()
    calls: list[tuple[str | None, int, bool, bool]] = []
    real = service.recommend

    def recording(user: str | None = None, **kwargs: object):
        calls.append((user, kwargs["k"], kwargs["rerank"], kwargs.get("explain", False)))  # type: ignore[arg-type]
        return real(user, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(service, "recommend", recording)
    seconds = service.warm()
    vocab = ml100k.dataset.user_vocab
    assert seconds is not None and seconds >= 0
    assert calls == [(vocab.id(0), 5, True, True), (vocab.id(1), DEFAULT_K, True, False)]


def test_the_warm_up_runs_on_the_models_own_thread(ml100k: DataBundle, tmp_path: Path, monkeypatch):
    """Requests that need the model run on the queue's thread, so the warm-up must too: a thread's first model calls
    pay for its own allocator arena and thread pool (one user's first list after the warm-up took 3.7-4.2 s when
    the warm-up ran on another thread, 2.9-3.4 s when it ran on the same one; two runs each, one torch thread)."""
    from fastapi.testclient import TestClient

    from recllm.serve.app import create_app

    threads: list[str] = []

    def warm(self: Service) -> float:
        threads.append(threading.current_thread().name)
        return 0.0

    monkeypatch.setattr(Service, "warm", warm)
    app = create_app(config=_config(warm_llm=True), db_url=f"sqlite:///{tmp_path / 's.sqlite'}")
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
    assert len(threads) == 1 and threads[0].startswith("recllm-llm")
