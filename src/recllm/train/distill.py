"""Distilling an LLM re-ranker into a student that needs no language model at request time.

The teacher (any re-ranker that scores candidates: the verbalizer, the likelihood re-ranker, a tuned adapter)
judges the retriever's top ``n`` for sampled users at validation time: the retriever is fitted on the training
part, each list excludes the user's training items and its target is the user's validation item, so nothing
here sees a test interaction. The student (``recllm.rerank.distilled``) is a ridge regression from LLM-free
features to the teacher's standardised scores; its ridge strength is chosen by agreement with the teacher on
held-out lists, and the blend weights of teacher and student with the retriever by validation NDCG@10.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from recllm.data.catalog import ItemCatalog
from recllm.data.itemlist import ItemList
from recllm.data.splits import Split
from recllm.errors import ConfigError
from recllm.models.base import Recommender
from recllm.ranking import ndcg_from_ranks
from recllm.rerank.base import Reranker
from recllm.rerank.blend import DEFAULT_GRID, BlendChoice, blend_scores, choose_blend_weight, normalize_scores
from recllm.rerank.distilled import FEATURES, DistilledReranker, StudentFeatures

log = logging.getLogger(__name__)

L2_GRID: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)


@dataclass(frozen=True)
class JudgedList:
    """One user's candidates (retriever order and scores), the teacher's score for each, and the held-out
    item the list is judged by (None when the user has none)."""

    user: str
    history: tuple[str, ...]
    candidates: ItemList
    teacher: np.ndarray
    target: str | None


@dataclass
class DistillReport:
    """What distillation chose and how well the student imitates its teacher."""

    lists: int
    l2: float
    agreement: dict[float, float]
    """Mean Spearman correlation of student and teacher over held-out lists, per ridge strength tried."""
    teacher_blend: BlendChoice
    student_blend: BlendChoice
    feature_weights: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"lists": self.lists, "l2": self.l2, "agreement": {str(k): v for k, v in self.agreement.items()},
                "teacher_blend": {"weight": self.teacher_blend.weight, "validation_ndcg10": self.teacher_blend.value,
                                  "by_weight": {str(k): v for k, v in self.teacher_blend.values.items()}},
                "student_blend": {"weight": self.student_blend.weight, "validation_ndcg10": self.student_blend.value,
                                  "by_weight": {str(k): v for k, v in self.student_blend.values.items()}},
                "feature_weights": self.feature_weights, "seconds": self.seconds}


def validation_lists(retriever: Recommender, split: Split, *, users: int, n: int = 20, seed: int = 0
                     ) -> list[tuple[str, list[str], ItemList, str]]:
    """(user, training history, top-``n`` candidates, validation item) for ``users`` seeded users; the retriever
    must be fitted on ``split.train`` (its recommendations then exclude exactly the training items)."""
    if retriever.user_vocab is None or retriever.item_vocab is None:
        raise ConfigError("distillation needs a retriever fitted on the training part of the split")
    valid_users = np.unique(split.valid.users)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(valid_users, size=min(users, len(valid_users)), replace=False))
    targets = {int(u): int(i) for u, i in zip(split.valid.users, split.valid.items, strict=True)}
    out = []
    for user in chosen:
        user_id = split.train.user_vocab.id(int(user))
        history = split.train.item_vocab.lookup_ids(retriever.history_of(retriever.user_vocab.index(user_id)))
        candidates = retriever.recommend(user_id, k=n)
        out.append((str(user_id), list(history), candidates, str(split.train.item_vocab.id(targets[int(user)]))))
    return out


def judge(teacher: Reranker, lists: Sequence[tuple[str, list[str], ItemList, str | None]],
          progress: Callable[[int], None] | None = None) -> list[JudgedList]:
    """The teacher's score of every candidate of every list (aligned with the candidates' order)."""
    judged = []
    for user, history, candidates, target in lists:
        result = teacher.rerank(history, candidates, user=user)
        by_item = dict(zip(result.items.items, np.asarray(result.items.scores, dtype=np.float64), strict=True))
        judged.append(JudgedList(user, tuple(history), candidates,
                                 np.array([by_item[c] for c in candidates.items], dtype=np.float64), target))
        if progress:
            progress(1)
    return judged


def blended_ndcg(lists: Sequence[JudgedList], scores_of: Callable[[JudgedList], np.ndarray], weight: float,
                 k: int = 10) -> float:
    """Mean NDCG@k of weight * z(scores) + (1 - weight) * z(retriever) over lists with a target (a target
    outside the candidates counts 0)."""
    ranks = []
    for judged in lists:
        if judged.target is None:
            continue
        order = blend_scores(judged.candidates, ItemList(judged.candidates.items, scores_of(judged)), weight).items
        ranks.append(order.index(judged.target) if judged.target in order else k)
    values = ndcg_from_ranks(np.asarray(ranks), k)
    if not len(values):
        raise ConfigError("no judged list has a target to choose a blend weight by")
    return float(np.mean(values))


def _standardised(judged: Sequence[JudgedList]) -> np.ndarray:
    return np.concatenate([normalize_scores(j.teacher) for j in judged])


def _agreement(student: DistilledReranker, judged: Sequence[JudgedList]) -> float:
    values = []
    for j in judged:
        if len(j.teacher) > 2 and np.ptp(j.teacher) > 0:
            rho = spearmanr(student.student_scores(j.history, j.candidates), j.teacher).statistic
            values.append(0.0 if np.isnan(rho) else float(rho))
    return float(np.mean(values)) if values else 0.0


def _ridge(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    gram = x.T @ x + l2 * np.eye(x.shape[1])
    return np.linalg.solve(gram, x.T @ y)


def fit_student(judged: Sequence[JudgedList], features: StudentFeatures, *, l2_grid: Sequence[float] = L2_GRID,
                holdout: float = 0.2, grid: Sequence[float] = DEFAULT_GRID, seed: int = 0,
                info: dict[str, Any] | None = None) -> tuple[DistilledReranker, DistillReport]:
    """The student imitating ``judged``'s teacher: ridge strength by held-out agreement, refitted on all lists,
    then both blend weights by validation NDCG@10 over the lists' targets."""
    if len(judged) < 5:
        raise ConfigError(f"distillation needs at least 5 judged lists, got {len(judged)}")
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(judged))
    cut = max(1, round(holdout * len(judged)))
    held, fit = [judged[i] for i in order[:cut]], [judged[i] for i in order[cut:]]

    def design(lists: Sequence[JudgedList]) -> np.ndarray:
        return np.vstack([features.matrix(j.history, j.candidates) for j in lists]).astype(np.float64)

    x_fit, y_fit = design(fit), _standardised(fit)
    agreement = {}
    for l2 in l2_grid:
        trial = DistilledReranker.from_parts(features, _ridge(x_fit, y_fit, l2).astype(np.float32), blend_weight=1.0)
        agreement[float(l2)] = _agreement(trial, held)
    l2 = max(agreement, key=lambda v: agreement[v])
    coef = _ridge(design(judged), _standardised(judged), l2).astype(np.float32)
    draft = DistilledReranker.from_parts(features, coef, blend_weight=1.0)
    teacher_blend = choose_blend_weight(lambda w: blended_ndcg(judged, lambda j: j.teacher, w), grid)
    student_blend = choose_blend_weight(
        lambda w: blended_ndcg(judged, lambda j: draft.student_scores(j.history, j.candidates), w), grid)
    report = DistillReport(lists=len(judged), l2=l2, agreement=agreement, teacher_blend=teacher_blend,
                           student_blend=student_blend,
                           feature_weights={name: float(coef[i]) for i, name in enumerate(FEATURES)},
                           seconds=time.perf_counter() - started)
    log.info("student: ridge %.3g (held-out agreement %.3f), blend weight %.2f (teacher %.2f)", l2, agreement[l2],
             student_blend.weight, teacher_blend.weight)
    student = DistilledReranker.from_parts(features, coef, blend_weight=student_blend.weight,
                                           info={**(info or {}), "report": report.as_dict()})
    return student, report


def student_features(split: Split, catalog: ItemCatalog, embedder: str = "lm") -> StudentFeatures:
    """The student's inputs for the split's items: their catalog texts embedded once by ``embedder`` (cached in the
    embedding store) and their training popularity."""
    from recllm.llm.item_text import embed_items

    item_ids = list(split.train.item_vocab.ids)
    return StudentFeatures(item_ids, embed_items(catalog, item_ids, embedder),
                           np.asarray(split.train.item_popularity, dtype=np.float32))


def distill(teacher: Reranker, retriever: Recommender, split: Split, catalog: ItemCatalog, *, users: int = 400,
            n: int = 20, embedder: str = "lm", seed: int = 0, progress: Callable[[int], None] | None = None,
            info: dict[str, Any] | None = None) -> tuple[DistilledReranker, DistillReport, list[JudgedList]]:
    """Judge ``users`` validation-time lists of the retriever (fitted on ``split.train``) with the teacher and
    fit a student on them; returns the student, the report and the judged lists."""
    lists = validation_lists(retriever, split, users=users, n=n, seed=seed)
    judged = judge(teacher, lists, progress)
    student, report = fit_student(judged, student_features(split, catalog, embedder), seed=seed,
                                  info={"teacher": teacher.name, "embedder": embedder, "candidates": n, **(info or {})})
    return student, report, judged
