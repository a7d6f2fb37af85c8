"""Embeddings of a fixed list of texts (a catalog's item descriptions), computed once and kept on disk.

Embedding MovieLens-100K's 1,682 descriptions with MiniLM takes about 20 s on two CPU cores, and the service
did it at every start. The vectors depend only on the embedder and the texts, so they are stored under
``$RECLLM_HOME/cache/embeddings/`` by a digest of both and read back in milliseconds. The store is a cache:
an unreadable or mismatched file is recomputed (with a log line), never an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from recllm.artifacts import recllm_home
from recllm.llm.base import Embedder

log = logging.getLogger(__name__)


def default_store() -> Path:
    """``$RECLLM_HOME/cache/embeddings``."""
    return recllm_home() / "cache" / "embeddings"


def store_key(embedder: Embedder, texts: Sequence[str]) -> str:
    """Hex sha256 of the embedder (class, model name, dimension) and the texts in order."""
    text = json.dumps({"embedder": type(embedder).__name__, "model": embedder.model_name, "dim": embedder.dim,
                       "texts": list(texts)}, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def embed_stored(embedder: Embedder, texts: Sequence[str], store: Path | None = None,
                 compute: Callable[[Sequence[str]], np.ndarray] | None = None) -> np.ndarray:
    """``embedder.embed(texts)``, read from ``store`` (default: ``default_store()``) when these texts were
    embedded by this embedder before, computed and written there otherwise. ``compute`` replaces
    ``embedder.embed`` for the computing (e.g. the same model sharded over Ray workers)."""
    folder = store if store is not None else default_store()
    path = folder / f"{store_key(embedder, texts)}.npy"
    expected = (len(texts), embedder.dim)
    if path.exists():
        try:
            vectors = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("embedding store: %s unreadable (%s); embedding again", path, exc)
        else:
            if vectors.shape == expected and vectors.dtype == np.float32 and np.isfinite(vectors).all():
                log.info("embedding store: %d texts read from %s", len(texts), path)
                return vectors
            log.warning("embedding store: %s holds %s %s, expected %s float32; embedding again", path,
                        vectors.shape, vectors.dtype, expected)
    vectors = compute(texts) if compute is not None else embedder.embed(texts)
    if vectors.shape != expected:
        raise ValueError(f"embedding {len(texts)} texts gave an array of shape {vectors.shape}, expected {expected}")
    vectors = vectors.astype(np.float32, copy=False)
    _write(path, vectors)
    return vectors


def _write(path: Path, vectors: np.ndarray) -> None:
    """Write atomically (a temporary file renamed into place), so a reader never sees half a file; a
    read-only or full disk only costs the next start the embedding time."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            np.save(out, vectors, allow_pickle=False)
        os.replace(temporary, path)
    except OSError as exc:
        log.warning("embedding store: could not write %s (%s)", path, exc)
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
