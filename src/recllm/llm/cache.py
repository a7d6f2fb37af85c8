"""A persistent response cache (SQLite, WAL mode) and ``CachedLLM``, which answers repeated calls from it.

Keys are the sha256 of (backend, model, method, prompt or messages, parameters) as canonical JSON; values
are JSON. Sampled generation without a seed is never cached (each call should draw a new sample).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from recllm.artifacts import recllm_home
from recllm.llm.base import LLM, Completion, GenerationRequest, LLMError

log = logging.getLogger(__name__)

SCHEMA = """CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    method TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL
)"""


def default_cache_path() -> Path:
    """``$RECLLM_HOME/cache/llm.sqlite``."""
    return recllm_home() / "cache" / "llm.sqlite"


def cache_key(backend: str, model: str, method: str, payload: Any) -> str:
    """Hex sha256 of the call's canonical JSON description."""
    text = json.dumps({"backend": backend, "model": model, "method": method, "payload": payload},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResponseCache:
    """Key -> JSON value store in one SQLite file; one connection guarded by a lock (thread-safe in-process)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise LLMError(f"{self.path}: cannot open the LLM response cache ({exc})") from exc

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        """Values found for ``keys`` (missing keys are absent from the result)."""
        found: dict[str, Any] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), 500):
                part = unique[start:start + 500]
                marks = ",".join("?" * len(part))
                rows = self._conn.execute(f"SELECT key, value FROM responses WHERE key IN ({marks})", part)
                found.update((key, json.loads(value)) for key, value in rows)
        return found

    def get(self, key: str) -> Any | None:
        return self.get_many([key]).get(key)

    def put_many(self, entries: Iterable[tuple[str, str, str, str, Any]]) -> None:
        """Store ``(key, backend, model, method, value)`` rows, replacing existing keys, in one transaction."""
        now = time.time()
        rows = [(key, backend, model, method, json.dumps(value), now)
                for key, backend, model, method, value in entries]
        if not rows:
            return
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)", rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def clear(self) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM responses")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@runtime_checkable
class CacheStore(Protocol):
    """Where cached responses live: a ``ResponseCache`` file, or the service's database."""

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]: ...

    def get(self, key: str) -> Any | None: ...

    def put_many(self, entries: Iterable[tuple[str, str, str, str, Any]]) -> None: ...


class CachedLLM(LLM):
    """Wraps an LLM: identical calls are answered from a ``ResponseCache``; hits and misses are counted.

    ``generate`` is cached per request (only deterministic ones: greedy, or sampled with a seed);
    ``logprobs`` and ``next_token_logprobs`` per call. Usage counters are the wrapped model's (a hit costs
    no model time).
    """

    def __init__(self, inner: LLM, cache: CacheStore | str | Path | None = None) -> None:
        super().__init__(inner.model_name)
        self.inner = inner
        self.backend = inner.backend
        self.usage = inner.usage
        self.cache: CacheStore = cache if isinstance(cache, CacheStore) else ResponseCache(cache)
        self.hits = 0
        self.misses = 0
        self._count_lock = threading.Lock()

    def health(self, timeout: float = 3.0) -> str | None:
        return self.inner.health(timeout)

    @property
    def can_score(self) -> bool:
        return self.inner.can_score

    @property
    def can_schema(self) -> bool:
        return self.inner.can_schema

    @property
    def can_grammar(self) -> bool:
        return self.inner.can_grammar

    @property
    def context_length(self) -> int | None:
        return self.inner.context_length

    @property
    def scores_prompts_jointly(self) -> bool:
        return self.inner.scores_prompts_jointly

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def render_chat(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> str:
        return self.inner.render_chat(messages, add_generation_prompt=add_generation_prompt)

    def stats(self) -> dict[str, int]:
        with self._count_lock:
            return {"hits": self.hits, "misses": self.misses}

    def _count(self, hits: int, misses: int) -> None:
        with self._count_lock:
            self.hits += hits
            self.misses += misses

    @property
    def cache_identity(self) -> str:
        return self.inner.cache_identity

    def _key(self, method: str, payload: Any) -> str:
        return cache_key(self.backend, self.cache_identity, method, payload)

    def _generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        keys = [self._key("generate", r.to_payload()) if r.deterministic else None for r in requests]
        found = self.cache.get_many([k for k in keys if k is not None])
        results: list[Completion | None] = [
            Completion.from_dict(found[k]) if k is not None and k in found else None for k in keys]
        missing = [i for i, c in enumerate(results) if c is None]
        self._count(len(requests) - len(missing), len(missing))
        if missing:
            fresh = self.inner.generate([requests[i] for i in missing])
            rows = []
            for i, completion in zip(missing, fresh, strict=True):
                results[i] = completion
                key = keys[i]
                if key is not None:
                    rows.append((key, self.backend, self.model_name, "generate", completion.to_dict()))
            self.cache.put_many(rows)
        return [c for c in results if c is not None]

    def _cached_scores(self, method: str, prompt: str, texts: list[str]) -> np.ndarray:
        key = self._key(method, {"prompt": prompt, "texts": texts})
        value = self.cache.get(key)
        if value is not None:
            self._count(1, 0)
            return np.asarray(value, dtype=np.float64)
        self._count(0, 1)
        call = self.inner.logprobs if method == "logprobs" else self.inner.next_token_logprobs
        scores = call(prompt, texts)
        self.cache.put_many([(key, self.backend, self.model_name, method, [float(s) for s in scores])])
        return scores

    def _logprobs(self, prompt: str, continuations: list[str]) -> np.ndarray:
        return self._cached_scores("logprobs", prompt, continuations)

    def _next_token_logprobs(self, prompt: str, tokens: list[str]) -> np.ndarray:
        return self._cached_scores("next_token_logprobs", prompt, tokens)

    def _logprobs_many(self, jobs: list[tuple[str, list[str]]]) -> list[np.ndarray]:
        """Cached jobs answered from the cache; the others scored by the wrapped model in one call."""
        keys = [self._key("logprobs", {"prompt": prompt, "texts": texts}) for prompt, texts in jobs]
        found = self.cache.get_many(keys)
        missing = [i for i, key in enumerate(keys) if key not in found]
        self._count(len(jobs) - len(missing), len(missing))
        results = {i: np.asarray(found[key], dtype=np.float64) for i, key in enumerate(keys) if key in found}
        if missing:
            fresh = self.inner.logprobs_many([jobs[i] for i in missing])
            results.update(zip(missing, fresh, strict=True))
            self.cache.put_many([(keys[i], self.backend, self.model_name, "logprobs", [float(s) for s in results[i]])
                                 for i in missing])
        return [results[i] for i in range(len(jobs))]

    def __repr__(self) -> str:
        where = getattr(self.cache, "path", None) or getattr(self.cache, "safe_url", type(self.cache).__name__)
        return f"CachedLLM({self.inner!r}, cache={str(where)!r})"
