"""``RerankerContract``: the checks every ``recllm.rerank.base.Reranker`` must pass, as a pytest mixin.

Re-rankers usually call a language model, so the suite is frugal: the main result is computed once per test
class and reused; only the determinism and the one-candidate checks ask again (three calls in all; an empty
candidate list and bad arguments must be answered without the model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np
import pytest

from recllm.data.catalog import ItemCatalog
from recllm.data.itemlist import ItemList
from recllm.rerank.base import Reranker, RerankError, RerankRequest, RerankResult
from recllm.rerank.diagnostics import Diagnostics, summarize_diagnostics
from recllm.testing.data import film_catalog, ranked

__all__ = ["RerankCase", "RerankerContract"]

COUNT_FIELDS = ("n_candidates", "outputs", "format_errors", "mentions", "duplicates", "missing_filled",
                "outside_result", "prompt_tokens", "generated_tokens", "scored_tokens", "llm_calls", "history_dropped")
"""The integer fields of ``Diagnostics``: counts, so never negative."""


@dataclass(frozen=True)
class RerankCase:
    """A re-ranker, the inputs it was given and what it returned (shared by one test class)."""

    reranker: Reranker
    history: list[str]
    candidates: ItemList
    result: RerankResult


class RerankerContract:
    """Mixin of contract tests for a ``recllm.rerank.base.Reranker``.

    Override ``make_reranker`` (or, when building it needs pytest fixtures such as a session-wide LLM, the
    class-scoped ``contract_reranker`` fixture). ``make_catalog``, ``make_history`` and ``make_candidates``
    give the inputs: by default a few well-known films (``recllm.testing.data.FILMS``), three of them as
    the history and four as the retriever's candidates. Set ``scores_finite = False`` for a re-ranker that may
    legitimately give a candidate ``-inf``.
    """

    scores_finite: ClassVar[bool] = True

    # ---- hooks ------------------------------------------------------------------------------------
    def make_reranker(self) -> Reranker:
        """The re-ranker under test (it may use ``make_catalog()``)."""
        raise NotImplementedError(f"{type(self).__name__} must override make_reranker() (or the "
                                  "contract_reranker fixture)")

    def make_catalog(self) -> ItemCatalog:
        """The item catalog the re-ranker describes items from; it covers history and candidates."""
        return film_catalog()

    def make_history(self) -> list[str]:
        """The user's item ids, oldest first."""
        return ["star-wars", "empire", "jedi"]

    def make_candidates(self) -> ItemList:
        """The retriever's candidates, best first (at least two)."""
        return ranked(["titanic", "raiders", "toy-story", "alien"])

    @pytest.fixture(scope="class")
    @classmethod
    def contract_reranker(cls) -> Reranker:
        """The re-ranker under test, built once per test class."""
        return cls().make_reranker()

    @pytest.fixture(scope="class")
    @classmethod
    def contract_case(cls, contract_reranker: Reranker) -> RerankCase:
        """The re-ranker's answer for the default history and candidates, computed once per test class."""
        hooks = cls()
        history, candidates = hooks.make_history(), hooks.make_candidates()
        return RerankCase(contract_reranker, history, candidates, contract_reranker.rerank(history, candidates))

    # ---- the result -------------------------------------------------------------------------------
    def test_the_result_is_a_permutation_of_the_candidates(self, contract_case: RerankCase) -> None:
        result, candidates = contract_case.result, contract_case.candidates
        assert isinstance(result, RerankResult) and isinstance(result.items, ItemList)
        assert result.order == result.items.items
        assert len(result.order) == len(candidates) and len(set(result.order)) == len(candidates)
        assert set(result.order) == set(candidates.items)  # grounded: nothing outside, nothing lost
        assert 0 <= result.n_ranked <= len(candidates)

    def test_scores_are_best_first(self, contract_case: RerankCase) -> None:
        scores = contract_case.result.items.scores
        assert scores.shape == (len(contract_case.candidates),)
        assert not np.isnan(scores).any()
        if self.scores_finite:
            assert np.isfinite(scores).all()
        assert (np.diff(scores) <= 0).all(), "the result lists its best item first"

    def test_diagnostics_describe_the_call(self, contract_case: RerankCase) -> None:
        d = contract_case.result.diagnostics
        assert isinstance(d, Diagnostics)
        assert d.reranker == contract_case.reranker.name and d.reranker
        assert d.n_candidates == len(contract_case.candidates)
        assert d.outside_result == 0
        for name in COUNT_FIELDS:
            value = getattr(d, name)
            assert isinstance(value, int) and value >= 0, f"diagnostics.{name} = {value!r}"
        assert d.latency_s >= 0
        assert all(isinstance(h, str) for h in d.hallucinated)
        assert all(isinstance(o, str) for o in d.raw_outputs)
        record = d.to_dict()
        assert set(record) == {f.name for f in fields(Diagnostics)}
        assert json.loads(json.dumps(record)) == record
        assert summarize_diagnostics([d]).grounded_hallucination_rate == 0.0

    def test_the_same_inputs_give_the_same_ranking(self, contract_case: RerankCase) -> None:
        again = contract_case.reranker.rerank(contract_case.history, contract_case.candidates)
        assert again.order == contract_case.result.order
        assert again.n_ranked == contract_case.result.n_ranked
        np.testing.assert_allclose(again.items.scores, contract_case.result.items.scores, rtol=1e-6, atol=1e-6)

    def test_several_users_at_once_get_what_each_gets_alone(self, contract_case: RerankCase) -> None:
        reranker, history, candidates = contract_case.reranker, contract_case.history, contract_case.candidates
        shorter = history[1:] or history
        requests = [RerankRequest(history, candidates), RerankRequest(shorter, candidates.top(3), user="contract-user"),
                    RerankRequest(history, ItemList.empty())]
        together = reranker.rerank_many(requests)
        assert len(together) == len(requests)
        alone = [contract_case.result, reranker.rerank(shorter, candidates.top(3), user="contract-user")]
        for joint, single in zip(together, alone, strict=False):
            assert joint.order == single.order and joint.n_ranked == single.n_ranked
            np.testing.assert_allclose(joint.items.scores, single.items.scores, rtol=1e-4, atol=1e-4)
            assert joint.diagnostics.n_candidates == single.diagnostics.n_candidates
        assert together[2].order == () and together[2].diagnostics.n_candidates == 0
        assert reranker.rerank_many([]) == []

    # ---- edge cases -------------------------------------------------------------------------------
    def test_no_candidates_give_an_empty_result(self, contract_case: RerankCase) -> None:
        result = contract_case.reranker.rerank(contract_case.history, ItemList.empty())
        assert result.order == () and len(result.items) == 0 and result.n_ranked == 0
        assert result.diagnostics.n_candidates == 0 and result.diagnostics.outside_result == 0

    def test_one_candidate_comes_back_alone(self, contract_case: RerankCase) -> None:
        only = contract_case.candidates.top(1)
        result = contract_case.reranker.rerank(contract_case.history, only, user="contract-user")
        assert result.order == only.items
        assert 0 <= result.n_ranked <= 1 and result.diagnostics.n_candidates == 1

    def test_bad_inputs_are_rerank_errors(self, contract_case: RerankCase) -> None:
        reranker, candidates = contract_case.reranker, contract_case.candidates
        with pytest.raises(RerankError):
            reranker.rerank(" ".join(contract_case.history), candidates)  # a str is a Sequence[str]: refused
        with pytest.raises(RerankError):
            reranker.rerank(contract_case.history, list(candidates.items))  # type: ignore[arg-type]
