"""Distillation: the student learns a teacher whose judgement lives only in the item vectors, keeps no test
interaction in its training lists, is saved and loaded, and re-ranks in a pipeline with no language model."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from recllm.data import DataBundle, Item, ItemCatalog, ItemList
from recllm.data.splits import leave_one_out
from recllm.errors import ConfigError
from recllm.models import create_model
from recllm.pipeline import Pipeline, PipelineConfig, RerankerConfig, RetrieverConfig
from recllm.rerank import Diagnostics, Reranker, RerankResult, create_reranker
from recllm.rerank.base import sort_by_scores
from recllm.rerank.distilled import DistilledReranker, StudentFeatures
from recllm.serve.service import LLMUnavailableError, Service, ServiceConfig
from recllm.serve.storage import Store
from recllm.testing import ring_dataset
from recllm.train.distill import blended_ndcg, fit_student, judge, validation_lists

N_ITEMS = 40


def vectors(seed: int = 0) -> np.ndarray:
    """Item vectors whose first coordinate is the hidden quality the teacher judges by."""
    rng = np.random.default_rng(seed)
    out = rng.normal(size=(N_ITEMS, 8)).astype(np.float32)
    out[:, 0] = np.linspace(-2.0, 2.0, N_ITEMS)[rng.permutation(N_ITEMS)]
    return out


class QualityTeacher(Reranker):
    """Scores a candidate by its hidden quality (the first coordinate of its vector), as an LLM would by
    what it knows of the item."""

    def __init__(self, item_ids: Sequence[str], vecs: np.ndarray) -> None:
        self.quality = {item: float(v[0]) for item, v in zip(item_ids, vecs, strict=True)}
        self.calls = 0

    @property
    def name(self) -> str:
        return "quality-teacher"

    def rerank(self, history: Sequence[str], candidates: ItemList, *, user: object | None = None) -> RerankResult:
        self.calls += 1
        scores = np.array([self.quality[c] for c in candidates.items])
        order = sort_by_scores(candidates.items, scores)
        by = dict(zip(candidates.items, scores, strict=True))
        return RerankResult(ItemList(order, np.array([by[i] for i in order])),
                            Diagnostics(reranker=self.name, model="none", backend="none",
                                        n_candidates=len(candidates)), len(order))


@pytest.fixture(scope="module")
def fitted() -> tuple:
    dataset = ring_dataset(n_users=60, length=10, n_items=N_ITEMS, seed=3)
    split = leave_one_out(dataset)
    retriever = create_model("itemknn", {"neighbors": 20}).fit(split.train)
    ids = list(split.train.item_vocab.ids)
    features = StudentFeatures(ids, vectors(), np.asarray(split.train.item_popularity, dtype=np.float32))
    return dataset, split, retriever, ids, features


def test_validation_lists_hold_training_histories_and_validation_targets_only(fitted: tuple) -> None:
    _, split, retriever, _, _ = fitted
    lists = validation_lists(retriever, split, users=25, n=10, seed=0)
    vocab = split.train.item_vocab
    assert len(lists) == 25
    for user, history, candidates, target in lists:
        u = split.train.user_vocab.index(user)
        train_items = set(vocab.lookup_ids(split.train.items[split.train.users == u]))
        valid_item = vocab.id(int(split.valid.items[split.valid.users == u][0]))
        test_item = vocab.id(int(split.test.items[split.test.users == u][0]))
        assert set(history) == train_items  # nothing after the training part is in the history
        assert target == valid_item and test_item not in history and valid_item not in history
        assert not set(candidates.items) & train_items and len(candidates) == 10


def test_the_student_learns_a_judgement_that_lives_only_in_the_item_vectors(fitted: tuple) -> None:
    _, split, retriever, ids, features = fitted
    teacher = QualityTeacher(ids, vectors())
    judged = judge(teacher, validation_lists(retriever, split, users=50, n=10, seed=0))
    assert teacher.calls == 50
    student, report = fit_student(judged, features, seed=0)
    # held-out agreement with the teacher is high for the chosen ridge strength and beats an untrained student
    assert report.agreement[report.l2] > 0.8
    random_weights = np.random.default_rng(1).normal(size=features.dim).astype(np.float32)
    untrained = DistilledReranker.from_parts(features, random_weights, blend_weight=1.0)
    fresh = judge(teacher, validation_lists(retriever, split, users=50, n=10, seed=7))
    from scipy.stats import spearmanr

    def agreement(model: DistilledReranker) -> float:
        rhos = [spearmanr(model.student_scores(j.history, j.candidates), j.teacher).statistic for j in fresh]
        return float(np.nanmean(rhos))

    assert agreement(student) > 0.8 and agreement(student) > agreement(untrained) + 0.5
    # the blend weights are chosen by validation NDCG over the lists' targets, with the retriever alone at 0
    assert report.teacher_blend.values[0.0] == pytest.approx(blended_ndcg(judged, lambda j: j.teacher, 0.0))
    assert 0.0 <= student.blend_weight <= 1.0
    assert set(report.feature_weights) == {"retriever", "history_mean_cos", "history_max_cos", "popularity"}


def test_a_saved_student_loads_by_name_and_reranks_with_no_language_model(fitted: tuple, tmp_path: Path) -> None:
    _, split, retriever, ids, features = fitted
    judged = judge(QualityTeacher(ids, vectors()), validation_lists(retriever, split, users=30, n=10, seed=0))
    student, _ = fit_student(judged, features, seed=0, info={"teacher": "quality-teacher"})
    student.save(tmp_path / "student")
    loaded = create_reranker("distilled", None, ItemCatalog([]), path=str(tmp_path / "student"))
    assert isinstance(loaded, DistilledReranker) and not loaded.needs_llm
    history, candidates = judged[0].history, judged[0].candidates
    first, again = student.rerank(history, candidates), loaded.rerank(history, candidates)
    assert first.order == again.order and sorted(first.order) == sorted(candidates.items)
    np.testing.assert_allclose(first.items.scores, again.items.scores, rtol=1e-6)
    # an item added after distillation (no vector) is ranked, not dropped
    extra = ItemList((*candidates.items, "brand-new"), np.append(candidates.scores, 0.0))
    assert "brand-new" in loaded.rerank(history, extra).order


def test_a_missing_or_foreign_student_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds no student"):
        create_reranker("distilled", None, ItemCatalog([]), path=str(tmp_path))
    (tmp_path / "student.json").write_text('{"format": "something-else"}')
    (tmp_path / "student.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="is not a recllm-distilled-reranker"):
        create_reranker("distilled", None, ItemCatalog([]), path=str(tmp_path))


def test_a_pipeline_with_a_student_and_no_language_model_reranks(fitted: tuple, tmp_path: Path) -> None:
    dataset, split, retriever, ids, features = fitted
    judged = judge(QualityTeacher(ids, vectors()), validation_lists(retriever, split, users=30, n=10, seed=0))
    student, _ = fit_student(judged, features, seed=0)
    student.save(tmp_path / "student")
    catalog = ItemCatalog(Item(i, f"Film {i}") for i in ids)
    data = DataBundle(dataset=dataset, catalog=catalog)
    config = PipelineConfig(dataset="ring", retriever=RetrieverConfig(model="itemknn", params={"neighbors": 20}),
                            llm="none", reranker=RerankerConfig(name="distilled", candidates=10,
                                                                options={"path": str(tmp_path / "student")}))
    pipeline = Pipeline.from_config(config, data).fit(dataset)
    assert pipeline.llm is None and isinstance(pipeline.reranker, DistilledReranker)
    outcome = pipeline.run("u0", k=5)
    assert len(outcome.items) == 5 and set(outcome.items.items) <= set(outcome.candidates.items)
    assert outcome.rerank_diagnostics is not None and outcome.rerank_diagnostics.backend == "none"
    history = pipeline._history_ids("u0", None)
    assert outcome.items.items == pipeline.reranker.rerank(history, outcome.candidates).order[:5]


def test_the_service_reranks_with_a_student_and_no_language_model(fitted: tuple, tmp_path: Path) -> None:
    dataset, split, retriever, ids, features = fitted
    judged = judge(QualityTeacher(ids, vectors()), validation_lists(retriever, split, users=30, n=10, seed=0))
    fit_student(judged, features, seed=0)[0].save(tmp_path / "student")
    data = DataBundle(dataset=dataset, catalog=ItemCatalog(Item(i, f"Film {i}") for i in ids))
    pipeline = PipelineConfig(dataset="ring", retriever=RetrieverConfig(model="itemknn", params={"neighbors": 20}),
                              llm="none", reranker=RerankerConfig(name="distilled", candidates=10,
                                                                  options={"path": str(tmp_path / "student")}))
    service = Service.start(ServiceConfig(pipeline=pipeline, embedder="none"),
                            Store(f"sqlite:///{tmp_path / 'service.sqlite'}"), data=data)
    reranked = service.recommend("u0", k=5, rerank=True)
    assert reranked.reranked and len(reranked.items) == 5
    assert reranked.diagnostics is not None and reranked.diagnostics["reranker"] == "distilled"
    assert service.llm_status == "disabled"
    with pytest.raises(LLMUnavailableError):
        service.recommend("u0", k=5, explain=True)  # explanations still need a language model
