"""Re-ranked lists of different users answered in one model call (issue 16): the model queue gathers the
requests waiting behind a running call, the service makes their lists together (a bad request failing alone),
and over HTTP concurrent re-ranked requests share one ``logprobs_many`` call and get the lists each would get
alone."""

from __future__ import annotations

import asyncio
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest

from recllm.data import DataBundle
from recllm.llm.base import LLM, Completion, GenerationRequest
from recllm.pipeline import PipelineConfig, RerankerConfig, RetrieverConfig
from recllm.serve.llm_queue import LLMQueue, QueueFullError
from recllm.serve.service import ListAsk, NotFoundError, Recommendations, Service, ServiceConfig, ServiceError
from recllm.serve.storage import Store
from servers import serving_in_process


# ---- the queue ----------------------------------------------------------------------------------------------
def test_the_queue_gathers_the_requests_waiting_behind_a_call():
    release = threading.Event()
    calls: list[list[int]] = []

    def squares(requests: Sequence[int]) -> list[object]:
        calls.append(list(requests))
        if len(calls) == 1:
            assert release.wait(10)
        return [ValueError(f"odd {r}") if r == 5 else r * r for r in requests]

    async def scenario(max_batch: int) -> list[object]:
        queue = LLMQueue(16)
        first = asyncio.ensure_future(queue.run_batched("lists", squares, 1, max_batch=max_batch))
        while not calls:
            await asyncio.sleep(0.01)
        later = [asyncio.ensure_future(queue.run_batched("lists", squares, r, max_batch=max_batch))
                 for r in range(2, 8)]
        await asyncio.sleep(0.05)
        assert queue.pending == 7
        release.set()
        results = await asyncio.gather(first, *later, return_exceptions=True)
        assert queue.pending == 0 and queue.batches == len(calls) and queue.batched_requests == 7
        assert f"recllm_llm_batches_total {len(calls)}" in queue.metrics()
        assert "recllm_llm_batched_requests_total 7" in queue.metrics()
        queue.close()
        return results

    results = asyncio.run(scenario(8))
    assert calls == [[1], [2, 3, 4, 5, 6, 7]]  # the first ran alone at once; the rest waited and went together
    assert [r if not isinstance(r, Exception) else str(r) for r in results] == [1, 4, 9, 16, "odd 5", 36, 49]
    calls.clear()
    release.clear()
    asyncio.run(scenario(4))
    assert calls == [[1], [2, 3, 4, 5], [6, 7]]


def test_a_failing_batch_call_fails_each_of_its_requests_and_the_limit_holds():
    async def scenario() -> None:
        queue = LLMQueue(1)

        def broken(requests: Sequence[int]) -> list[int]:
            raise RuntimeError("the model fell over")

        with pytest.raises(RuntimeError, match="fell over"):
            await queue.run_batched("lists", broken, 1, max_batch=4)
        hold = threading.Event()
        running = asyncio.ensure_future(queue.run(lambda: hold.wait(10)))
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFullError):
            await queue.run_batched("lists", lambda rs: list(rs), 2, max_batch=4)
        hold.set()
        await running
        with pytest.raises(ValueError, match="at least 1"):
            await queue.run_batched("lists", lambda rs: list(rs), 2, max_batch=0)
        assert await queue.run_batched("lists", lambda rs: [r + 1 for r in rs], 2, max_batch=4) == 3
        queue.close()

    asyncio.run(scenario())


# ---- the service ----------------------------------------------------------------------------------------------
class JointScorer(LLM):
    """Scores every continuation by a fixed hash of (prompt, text), and says it scores prompts jointly; records the
    sizes of its ``logprobs_many`` calls, and holds the first until ``release`` is set."""

    backend = "fake"

    def __init__(self) -> None:
        super().__init__("joint-scorer")
        self.release = threading.Event()
        self.started = threading.Event()
        self.batches: list[int] = []

    @property
    def can_score(self) -> bool:
        return True

    @property
    def scores_prompts_jointly(self) -> bool:
        return True

    def _generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        return [Completion("A fine pick.", "stop", 10, 3) for _ in requests]

    def _logprobs(self, prompt: str, continuations: list[str]) -> np.ndarray:
        return np.array([-(zlib.crc32(f"{prompt}|{c}".encode()) % 1000) / 100 for c in continuations])

    def _logprobs_many(self, jobs: list[tuple[str, list[str]]]) -> list[np.ndarray]:
        self.batches.append(len(jobs))
        self.started.set()
        assert self.release.wait(30), "the test never released the model"
        return [self._logprobs(prompt, continuations) for prompt, continuations in jobs]


def _service(data: DataBundle, db: Path, llm: LLM, **settings: object) -> Service:
    config = ServiceConfig(pipeline=PipelineConfig(retriever=RetrieverConfig(params={"l2": 100.0}), llm="hf",
                                                   reranker=RerankerConfig(name="likelihood", candidates=8)),
                           embedder="none", warm_llm=False, **settings)  # type: ignore[arg-type]
    service = Service.start(config, Store(f"sqlite:///{db}"), data=data, llm=llm)
    service.load_llm()
    return service


def test_the_service_makes_several_lists_in_one_call_and_a_bad_ask_fails_alone(ml100k: DataBundle, tmp_path: Path):
    llm = JointScorer()
    llm.release.set()
    service = _service(ml100k, tmp_path / "s.sqlite", llm)
    try:
        assert service.list_batch == 8  # the re-ranker scores users jointly: gather up to 8
        asks = [ListAsk("196", k=5, rerank=True), ListAsk("no-such-user", k=5, rerank=True),
                ListAsk("22", k=99, rerank=True), ListAsk(history=("50", "172"), k=4, rerank=True)]
        outcomes = service.recommend_many(asks)
        assert llm.batches == [2]  # the two good asks in one model call
        assert isinstance(outcomes[1], NotFoundError) and "no-such-user" in str(outcomes[1])
        assert isinstance(outcomes[2], ServiceError) and "k must be between" in str(outcomes[2])
        alone = [service.recommend("196", k=5, rerank=True), service.recommend(history=["50", "172"], k=4, rerank=True)]
        for together, single in zip((outcomes[0], outcomes[3]), alone, strict=True):
            assert isinstance(together, Recommendations) and together.reranked
            assert [i.item for i in together.items] == [i.item for i in single.items]
            assert together.diagnostics is not None and together.diagnostics["reranker"] == "likelihood"
        assert service.recommend_many([]) == []
    finally:
        service.store.close()
    one = _service(ml100k, tmp_path / "t.sqlite", llm, rerank_batch=1)
    try:
        assert one.list_batch == 1  # set by the operator
    finally:
        one.store.close()


def test_concurrent_re_ranked_requests_share_one_model_call_over_http(ml100k: DataBundle, tmp_path: Path):
    llm = JointScorer()
    service = _service(ml100k, tmp_path / "s.sqlite", llm)
    users = ["186", "22", "244", "166"]
    with serving_in_process(service) as api, httpx.Client(base_url=str(api.base_url), timeout=60) as other:
        responses: dict[str, httpx.Response] = {}

        def ask(user: str) -> None:
            responses[user] = other.get(f"/users/{user}/recommendations", params={"k": 5, "rerank": "true"})

        first = threading.Thread(target=ask, args=("196",))
        first.start()
        assert llm.started.wait(30)
        waiting = [threading.Thread(target=ask, args=(u,)) for u in [*users, "no-such-user"]]
        for thread in waiting:
            thread.start()
        for _ in range(300):  # every request queued behind the held call (the bad one is found out there)
            depth = _metric(api.get("/metrics").text, "recllm_llm_queue_depth")
            if depth == 2 + len(users):
                break
            threading.Event().wait(0.02)
        assert depth == 2 + len(users)
        llm.release.set()
        for thread in [first, *waiting]:
            thread.join(60)
        assert responses["no-such-user"].status_code == 404
        assert all(responses[u].status_code == 200 for u in ["196", *users])
        assert llm.batches == [1, len(users)]  # the held call alone, then the four good ones that waited, together
        text = api.get("/metrics").text
        assert _metric(text, "recllm_llm_batches_total") == 2
        assert _metric(text, "recllm_llm_batched_requests_total") == 2 + len(users)
        for user in ["196", *users]:
            alone = service.recommend(user, k=5, rerank=True)
            assert [i["item"] for i in responses[user].json()["items"]] == [i.item for i in alone.items]


def _metric(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.rsplit(" ", 1)[1])
