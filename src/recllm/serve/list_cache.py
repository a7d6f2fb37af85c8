"""Per-user recommendation lists, kept ready to send: each entry holds the response body and the store's
``list_version`` of its user when it was computed, so feedback (written by any worker) or a new item makes it
stale at once. Bounded: the least recently used entry goes first."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable


class ListCache:
    """A bounded LRU map from a request key to ``(version, body)``; ``size`` 0 turns it off."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"the list cache size must be 0 or more, got {size}")
        self.size = size
        self._entries: OrderedDict[Hashable, tuple[Hashable, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, version: Hashable) -> bytes | None:
        """The body stored for ``key`` if it was computed at ``version``; None (a miss) otherwise."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != version:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: Hashable, version: Hashable, body: bytes) -> None:
        if self.size == 0:
            return
        with self._lock:
            self._entries[key] = (version, body)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def metrics(self) -> list[str]:
        """Its counters in Prometheus' text format."""
        return ["# HELP recllm_list_cache_requests_total Recommendation lists asked of the cache, by result.",
                "# TYPE recllm_list_cache_requests_total counter",
                f'recllm_list_cache_requests_total{{result="hit"}} {self.hits}',
                f'recllm_list_cache_requests_total{{result="miss"}} {self.misses}',
                "# HELP recllm_list_cache_entries Recommendation lists held.",
                "# TYPE recllm_list_cache_entries gauge",
                f"recllm_list_cache_entries {len(self._entries)}"]
