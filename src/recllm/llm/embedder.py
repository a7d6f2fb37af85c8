"""Sentence embeddings through sentence-transformers; the default is the pinned all-MiniLM-L6-v2 (384 dims)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field

from recllm.config import checked
from recllm.errors import ConfigError
from recllm.llm.base import Embedder
from recllm.llm.hf import quiet_progress_bars
from recllm.llm.resolve import resolve_embedder
from recllm.torch_runtime import pick_device

log = logging.getLogger(__name__)


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model; ``model`` is None (pinned MiniLM, read offline), a folder or a hub id."""

    target_argument = "model"

    @checked()
    def __init__(self, model: str | Path | None = None, *, device: str = "auto",
                 batch_size: Annotated[int, Field(ge=1)] = 64) -> None:
        from sentence_transformers import SentenceTransformer

        resolved = resolve_embedder(model)
        super().__init__(resolved.name)
        self.source = resolved.source
        self.batch_size = batch_size
        start = time.perf_counter()
        try:
            with quiet_progress_bars():
                self.model = SentenceTransformer(resolved.source, device=str(pick_device(device)),
                                                 local_files_only=resolved.local)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"could not load embedder '{resolved.source}': {exc}") from exc
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = getter()
        if not dim:
            raise ConfigError(f"embedder '{resolved.source}' does not report its embedding dimension")
        self._dim = int(dim)
        log.info("loaded embedder %s (%d dims) in %.2f s", resolved.name, self._dim, time.perf_counter() - start)

    @property
    def dim(self) -> int:
        return self._dim

    def _embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                            normalize_embeddings=True, show_progress_bar=False))
