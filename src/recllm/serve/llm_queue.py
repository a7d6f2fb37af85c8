"""The language model's own bounded queue: requests that need the model (re-ranked or explained lists,
ratings, explanations) run one after another on a dedicated thread, so retrieval requests never wait behind
them, and once ``limit`` of them are queued or running the next one is refused at once (503 with a
Retry-After) instead of waiting minutes."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from recllm.serve.service import ServiceError

T = TypeVar("T")


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
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recllm-llm")

    async def run(self, function: Callable[..., T], *args: object, **kwargs: object) -> T:
        """``function(*args, **kwargs)`` on the model thread; QueueFullError when ``limit`` are pending."""
        if self.pending >= self.limit:
            self.rejected += 1
            raise QueueFullError(f"the language model is busy ({self.pending} requests queued or running, the "
                                 f"limit is {self.limit}); retry in {self.retry_after_s} s", self.retry_after_s)
        self.pending += 1  # the event loop's thread alone changes it
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, functools.partial(function, *args, **kwargs))
        finally:
            self.pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def metrics(self) -> list[str]:
        return ["# HELP recllm_llm_queue_depth Model requests queued or running.",
                "# TYPE recllm_llm_queue_depth gauge", f"recllm_llm_queue_depth {self.pending}",
                "# HELP recllm_llm_queue_rejected_total Model requests refused because the queue was full.",
                "# TYPE recllm_llm_queue_rejected_total counter", f"recllm_llm_queue_rejected_total {self.rejected}"]
