"""The language model's own bounded queue: requests that need the model (re-ranked or explained lists,
ratings, explanations) run one after another on a dedicated thread, so retrieval requests never wait behind
them, and once ``limit`` of them are queued or running the next one is refused at once (503 with a
Retry-After) instead of waiting minutes.

Requests of one kind that can share a model call (re-ranked lists of different users) go through
``run_batched``: each one waits in its kind's group, and when the model thread comes to the group it takes
every request waiting there (up to ``max_batch``) into one call. No request waits for others to arrive: a
lone request runs as soon as the thread is free; only those that queued behind a running call are
gathered."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from recllm.serve.service import ServiceError

T = TypeVar("T")
BatchFunction = Callable[[Sequence[Any]], Sequence[Any]]
"""Takes several requests and returns, in their order, each one's result or the exception to raise for it."""


class QueueFullError(ServiceError):
    """The model's queue is full: answered 503 with ``Retry-After``."""

    status = 503

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after_s)}


class LLMQueue:
    """At most ``limit`` model requests queued or running; each runs on the one model thread."""

    def __init__(self, limit: int, *, retry_after_s: int = 5) -> None:
        if limit < 1:
            raise ValueError(f"the LLM queue limit must be at least 1, got {limit}")
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.pending = 0
        self.rejected = 0
        self.batches = 0
        self.batched_requests = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recllm-llm")
        self._groups: dict[Hashable, list[tuple[Any, asyncio.Future[Any]]]] = {}
        self._groups_lock = threading.Lock()

    def _admit(self) -> None:
        if self.pending >= self.limit:
            self.rejected += 1
            raise QueueFullError(f"the language model is busy ({self.pending} requests queued or running, the "
                                 f"limit is {self.limit}); retry in {self.retry_after_s} s", self.retry_after_s)

    async def run(self, function: Callable[..., T], *args: object, **kwargs: object) -> T:
        """``function(*args, **kwargs)`` on the model thread; QueueFullError when ``limit`` are pending."""
        self._admit()
        self.pending += 1  # the event loop's thread alone changes it
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, functools.partial(function, *args, **kwargs))
        finally:
            self.pending -= 1

    async def run_batched(self, kind: Hashable, function: BatchFunction, request: Any, *, max_batch: int) -> Any:
        """``request``'s result from ``function([...request...])`` on the model thread, in one call with the
        other requests of ``kind`` waiting when the thread comes to them (at most ``max_batch``); the result
        ``function`` gives for it, raised when it is an exception. QueueFullError when ``limit`` are pending."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._admit()
        self.pending += 1
        try:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[Any] = loop.create_future()
            with self._groups_lock:
                self._groups.setdefault(kind, []).append((request, future))
            # one turn on the model thread per request: a turn whose requests an earlier turn took does nothing
            await asyncio.wrap_future(self._executor.submit(self._serve_group, kind, function, max_batch, loop))
            return await future
        finally:
            self.pending -= 1

    def _serve_group(self, kind: Hashable, function: BatchFunction, max_batch: int,
                     loop: asyncio.AbstractEventLoop) -> None:
        """On the model thread: the requests of ``kind`` waiting now (up to ``max_batch``) in one call."""
        with self._groups_lock:
            waiting = self._groups.get(kind, [])
            taken, self._groups[kind] = waiting[:max_batch], waiting[max_batch:]
        taken = [(request, future) for request, future in taken if not future.cancelled()]
        if not taken:
            return
        self.batches += 1
        self.batched_requests += len(taken)
        try:
            results = list(function([request for request, _ in taken]))
            if len(results) != len(taken):
                raise RuntimeError(f"a batch function returned {len(results)} results for {len(taken)} requests")
        except Exception as exc:  # every request of the call fails with what failed it
            results = [exc] * len(taken)
        for (_, future), result in zip(taken, results, strict=True):
            loop.call_soon_threadsafe(_settle, future, result)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def metrics(self) -> list[str]:
        return ["# HELP recllm_llm_queue_depth Model requests queued or running.",
                "# TYPE recllm_llm_queue_depth gauge", f"recllm_llm_queue_depth {self.pending}",
                "# HELP recllm_llm_queue_rejected_total Model requests refused because the queue was full.",
                "# TYPE recllm_llm_queue_rejected_total counter", f"recllm_llm_queue_rejected_total {self.rejected}",
                "# HELP recllm_llm_batches_total Model calls that answered gathered requests (re-ranked lists).",
                "# TYPE recllm_llm_batches_total counter", f"recllm_llm_batches_total {self.batches}",
                "# HELP recllm_llm_batched_requests_total Requests answered by those calls (over batches: the mean "
                "batch size).",
                "# TYPE recllm_llm_batched_requests_total counter",
                f"recllm_llm_batched_requests_total {self.batched_requests}"]


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    """On the event loop: the request's result or exception, unless its client has gone."""
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
