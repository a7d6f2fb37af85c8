"""Every built-in re-ranker, and the two wrappers, against ``recllm.testing.RerankerContract`` on the real
default model (SmolLM2-135M): four candidates and one user keep it to a few model calls per class."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import pytest
from rerank_helpers import CANDIDATES, HISTORY, PositionBiased, itemlist

from recllm.data import ItemCatalog, ItemList
from recllm.llm import LLM
from recllm.llm.hf import HFBackend
from recllm.rerank import (
    BlendedReranker,
    Diagnostics,
    LikelihoodReranker,
    PermutationAggregator,
    Reranker,
    RerankResult,
    VerbalizerReranker,
    create_reranker,
    reranker_names,
)
from recllm.rerank.distilled import DistilledReranker, StudentFeatures
from recllm.testing import RerankCase, RerankerContract


def test_every_registered_reranker_has_a_contract_class_here() -> None:
    covered = {cls.name for cls in (TestLikelihood, TestVerbalizer, TestListwise, TestDistilled)}
    assert set(reranker_names()) <= covered


class OnTheFilmCatalog(RerankerContract):
    """The shared test catalog of well-known films (the ``movies`` fixture) with its usual history."""

    def make_history(self) -> list[str]:
        return list(HISTORY)

    def make_candidates(self) -> ItemList:
        return itemlist(CANDIDATES[:4])


class ByName(OnTheFilmCatalog):
    """A re-ranker built by name through the registry, as configuration files build it."""

    name: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}

    @pytest.fixture(scope="class")
    @classmethod
    def contract_reranker(cls, llm: LLM, movies: ItemCatalog) -> Reranker:
        return create_reranker(cls.name, llm, movies, **cls.options)


class TestLikelihood(ByName):
    name = "likelihood"


class TestLikelihoodScoringUsersJointly(OnTheFilmCatalog):
    """The blended likelihood re-ranker over a model that scores several users' prompts in one pass (the
    hf backend's GPU default, switched on here): ``rerank_many`` then makes one joint model call."""

    @pytest.fixture(scope="class")
    @classmethod
    def contract_reranker(cls, llm: LLM, movies: ItemCatalog) -> Iterator[Reranker]:
        assert isinstance(llm, HFBackend)
        llm.joint_scoring = True
        try:
            reranker = BlendedReranker(LikelihoodReranker(llm, movies), weight=0.5)
            assert reranker.scores_jointly
            yield reranker
        finally:
            llm.joint_scoring = False


class TestVerbalizer(ByName):
    name = "verbalizer"


class TestListwise(ByName):
    name = "listwise"
    options: ClassVar[dict[str, Any]] = {"k": 3}


class TestDistilled(OnTheFilmCatalog):
    """A distilled student (random item vectors and weights), saved and built by name: no model at all."""

    name = "distilled"

    @pytest.fixture(scope="class")
    @classmethod
    def contract_reranker(cls, movies: ItemCatalog, tmp_path_factory: pytest.TempPathFactory) -> Reranker:
        rng = np.random.default_rng(0)
        features = StudentFeatures(movies.ids, rng.normal(size=(len(movies), 6)), rng.integers(1, 50, len(movies)))
        folder = tmp_path_factory.mktemp("student")
        DistilledReranker.from_parts(features, rng.normal(size=features.dim).astype(np.float32),
                                     blend_weight=0.7).save(folder)
        return create_reranker(cls.name, None, movies, path=str(folder))


class TestPermutationAggregation(OnTheFilmCatalog):
    @pytest.fixture(scope="class")
    @classmethod
    def contract_reranker(cls, llm: LLM, movies: ItemCatalog) -> Reranker:
        return PermutationAggregator(LikelihoodReranker(llm, movies, calibrate=False), n_permutations=2,
                                     schedule="cyclic")


class TestBlend(OnTheFilmCatalog):
    @pytest.fixture(scope="class")
    @classmethod
    def contract_reranker(cls, llm: LLM, movies: ItemCatalog) -> Reranker:
        return BlendedReranker(VerbalizerReranker(llm, movies), weight=0.5)


# ---- the contract catches broken re-rankers ---------------------------------------------------------------
class DropsTheLast(Reranker):
    """Loses the retriever's last candidate: not a permutation of the candidates."""

    @property
    def name(self) -> str:
        return "drops-the-last"

    def rerank(self, history: Sequence[str], candidates: ItemList, *, user: object | None = None) -> RerankResult:
        kept = candidates.top(max(0, len(candidates) - 1))
        return RerankResult(kept, Diagnostics(reranker=self.name, model="none", backend="none",
                                              n_candidates=len(candidates)), len(kept))


class Unchecked(RerankerContract):
    """The contract, called by hand (never collected: no Test prefix)."""


def test_the_contract_fails_a_reranker_that_loses_a_candidate() -> None:
    contract, reranker = Unchecked(), DropsTheLast()
    history, candidates = contract.make_history(), contract.make_candidates()
    case = RerankCase(reranker, history, candidates, reranker.rerank(history, candidates))
    with pytest.raises(AssertionError):
        contract.test_the_result_is_a_permutation_of_the_candidates(case)
    faithful = BlendedReranker(PositionBiased(), weight=1.0)  # returns the candidates in the given order
    contract.test_the_result_is_a_permutation_of_the_candidates(
        RerankCase(faithful, history, candidates, faithful.rerank(history, candidates)))
