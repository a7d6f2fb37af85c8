"""A re-ranker distilled from an LLM's judgements: no language model runs at request time.

The student imitates a teacher re-ranker (an LLM scoring a retriever's candidates) with a ridge regression over
features that need only precomputed item vectors (the LLM's or the sentence embedder's, computed once offline):

- ``retriever``: the retriever's score, standardised over the user's candidates;
- ``history_mean_cos`` / ``history_max_cos``: cosine of the candidate's text vector to the mean of the user's
  newest ``recent`` history vectors, and the largest cosine to one of the newest ``recent_max`` of them;
- ``popularity``: log(1 + training interactions) of the candidate;
- the candidate's text vector itself, so the regression can learn the teacher's prior over items.

Every feature is centred over the candidates (only the order within one user's list matters) and the target is
the teacher's score standardised the same way. The final score blends the student with the retriever exactly
as the teacher's blend does (``blend_weight``, chosen on validation users). ``train.distill`` fits students;
``DistilledReranker.load`` reads one saved as safetensors + JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from safetensors.numpy import load_file, save_file

from recllm.data.catalog import ItemCatalog
from recllm.data.itemlist import ItemList
from recllm.errors import ConfigError
from recllm.llm.base import LLM
from recllm.rerank.base import Reranker, RerankResult, check_inputs
from recllm.rerank.blend import blend_scores, normalize_scores
from recllm.rerank.diagnostics import Diagnostics

FEATURES = ("retriever", "history_mean_cos", "history_max_cos", "popularity")
"""Named features, before the candidate's text vector."""
FORMAT = "recllm-distilled-reranker"
FORMAT_VERSION = 1


class StudentFeatures:
    """Turns (history, candidates) into the centred feature matrix the student regresses on."""

    def __init__(self, item_ids: Sequence[str], vectors: np.ndarray, popularity: np.ndarray, *, recent: int = 50,
                 recent_max: int = 10) -> None:
        if vectors.ndim != 2 or len(vectors) != len(item_ids) or len(popularity) != len(item_ids):
            raise ConfigError(f"student features need one vector and one popularity per item: {len(item_ids)} ids, "
                              f"vectors {vectors.shape}, popularity {popularity.shape}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.item_ids = tuple(str(i) for i in item_ids)
        self.index = {item: row for row, item in enumerate(self.item_ids)}
        self.vectors = (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        self.popularity = np.asarray(popularity, dtype=np.float32)
        self.recent = recent
        self.recent_max = recent_max

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1]) + len(FEATURES)

    def matrix(self, history: Sequence[str], candidates: ItemList) -> np.ndarray:
        """(len(candidates), dim) features, each column centred over the candidates; items the student has no
        vector for (added after distillation) get zero text features and zero popularity."""
        rows = [self.index.get(str(c), -1) for c in candidates.items]
        known = np.array([r >= 0 for r in rows])
        cand = np.zeros((len(rows), self.vectors.shape[1]), dtype=np.float32)
        cand[known] = self.vectors[[r for r in rows if r >= 0]]
        pop = np.zeros(len(rows), dtype=np.float32)
        pop[known] = np.log1p(self.popularity[[r for r in rows if r >= 0]])
        past = [self.index[h] for h in history if h in self.index]
        mean_cos = np.zeros(len(rows), dtype=np.float32)
        max_cos = np.zeros(len(rows), dtype=np.float32)
        if past:
            newest = self.vectors[past[-self.recent:]]
            centre = newest.mean(axis=0)
            norm = float(np.linalg.norm(centre))
            if norm > 0:
                mean_cos = cand @ (centre / norm)
            max_cos = (cand @ self.vectors[past[-self.recent_max:]].T).max(axis=1)
        retriever = normalize_scores(np.asarray(candidates.scores, dtype=np.float64)).astype(np.float32)
        features = np.column_stack([retriever, mean_cos, max_cos, pop, cand])
        return features - features.mean(axis=0, keepdims=True)


class DistilledReranker(Reranker):
    """The student: ``blend_weight`` * z(student score) + (1 - blend_weight) * z(retriever score).

    Built from a folder written by ``save`` (``path``) through the re-ranker registry, or from parts by
    ``train.distill``. It takes no language model (``needs_llm`` is false); the ``llm`` argument the registry
    passes is ignored.
    """

    needs_llm: ClassVar[bool] = False

    def __init__(self, llm: LLM | None = None, catalog: ItemCatalog | None = None, *, path: str) -> None:
        self._set(*_read(path))

    @classmethod
    def from_parts(cls, features: StudentFeatures, coef: np.ndarray, *, blend_weight: float,
                   info: dict[str, Any] | None = None) -> DistilledReranker:
        """A student from its features and regression weights (what ``train.distill`` fits)."""
        student = cls.__new__(cls)
        student._set(features, coef, blend_weight, dict(info or {}))
        return student

    def _set(self, features: StudentFeatures, coef: np.ndarray, blend_weight: float, info: dict[str, Any]) -> None:
        if coef.shape != (features.dim,):
            raise ConfigError(f"student weights have shape {coef.shape}, features need ({features.dim},)")
        if not 0.0 <= blend_weight <= 1.0:
            raise ConfigError(f"blend_weight must be in [0, 1], got {blend_weight}")
        self.features = features
        self.coef = np.asarray(coef, dtype=np.float32)
        self.blend_weight = float(blend_weight)
        self.info = info

    @property
    def name(self) -> str:
        return "distilled"

    def student_scores(self, history: Sequence[str], candidates: ItemList) -> np.ndarray:
        """The student's imitation of the teacher's (standardised) scores, aligned with ``candidates``."""
        return self.features.matrix(history, candidates) @ self.coef

    def rerank(self, history: Sequence[str], candidates: ItemList, *, user: object | None = None) -> RerankResult:
        history = check_inputs(history, candidates)
        start = time.perf_counter()
        items = candidates
        if len(candidates):
            student = ItemList(candidates.items, self.student_scores(history, candidates).astype(np.float64))
            items = blend_scores(candidates, student, self.blend_weight)
        diagnostics = Diagnostics(reranker=self.name, model=str(self.info.get("teacher", "student")),
                                  backend="none", n_candidates=len(candidates),
                                  latency_s=time.perf_counter() - start)
        return RerankResult(items=items, diagnostics=diagnostics, n_ranked=len(items))

    # ---- persistence --------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``student.safetensors`` (item vectors, popularity, weights) and ``student.json``."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"vectors": self.features.vectors, "popularity": self.features.popularity, "coef": self.coef},
                  str(folder / "student.safetensors"))
        record = {"format": FORMAT, "version": FORMAT_VERSION, "items": list(self.features.item_ids),
                  "features": [*FEATURES, f"text vector ({self.features.vectors.shape[1]} dims)"],
                  "recent": self.features.recent, "recent_max": self.features.recent_max,
                  "blend_weight": self.blend_weight, "info": self.info}
        (folder / "student.json").write_text(json.dumps(record, indent=1))
        return folder

    @classmethod
    def load(cls, directory: str | Path) -> DistilledReranker:
        """The student saved in ``directory``."""
        return cls(path=str(directory))


def _read(directory: str | Path) -> tuple[StudentFeatures, np.ndarray, float, dict[str, Any]]:
    """A saved student's parts; a ConfigError names a missing or foreign folder."""
    folder = Path(directory)
    meta, weights = folder / "student.json", folder / "student.safetensors"
    if not meta.is_file() or not weights.is_file():
        raise ConfigError(f"distilled re-ranker: {folder} holds no student (student.json and student.safetensors; "
                          "write one with `recllm train distill`)")
    record = json.loads(meta.read_text())
    if record.get("format") != FORMAT or record.get("version") != FORMAT_VERSION:
        raise ConfigError(f"distilled re-ranker: {meta} is not a {FORMAT} v{FORMAT_VERSION} record")
    arrays = load_file(str(weights))
    features = StudentFeatures(record["items"], arrays["vectors"], arrays["popularity"],
                               recent=int(record["recent"]), recent_max=int(record["recent_max"]))
    return features, arrays["coef"], float(record["blend_weight"]), dict(record.get("info", {}))
