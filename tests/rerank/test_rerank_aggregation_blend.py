"""Permutation aggregation against position bias, Borda and mean-rank arithmetic, blending, weight choice."""

from __future__ import annotations

import numpy as np
import pytest
from rerank_helpers import PositionBiased, Scripted, ScriptedLLM, itemlist

from recllm.data import ItemCatalog, ItemList
from recllm.rerank import (
    BlendedReranker,
    Diagnostics,
    ListwiseReranker,
    PermutationAggregator,
    RerankError,
    aggregate_rankings,
    blend_scores,
    choose_blend_weight,
    normalize_scores,
    summarize_diagnostics,
)

SIX = ["a", "b", "c", "d", "e", "f"]


def test_a_position_biased_reranker_no_longer_dictates_the_order() -> None:
    biased = PositionBiased()
    cands = itemlist(SIX)
    assert biased.rerank([], cands).order == tuple(SIX)  # alone, it reproduces the input order
    agg = PermutationAggregator(biased, n_permutations=5, method="borda", seed=7)
    result = agg.rerank([], cands)
    assert sorted(result.order) == SIX
    assert result.order != tuple(SIX)
    assert len({tuple(s) for s in biased.shown[1:]}) == 5  # five different orders were shown
    again = PermutationAggregator(PositionBiased(), n_permutations=5, method="borda", seed=7).rerank([], cands)
    assert again.order == result.order  # seeded: reproducible
    assert result.diagnostics.llm_calls == 5 and result.diagnostics.prompt_tokens == 50
    assert result.diagnostics.reranker == "permutation(position-biased)"


def test_cyclic_orders_cancel_a_pure_position_bias_exactly() -> None:
    agg = PermutationAggregator(PositionBiased(), n_permutations=6, schedule="cyclic")
    result = agg.rerank([], itemlist(SIX))
    assert np.all(result.items.scores == result.items.scores[0])  # every item saw every position once
    assert result.items.scores[0] == sum(6 - r for r in range(6))
    assert result.order == tuple(SIX)  # all tied: the retriever order breaks the tie


def test_borda_and_mean_rank_by_hand() -> None:
    # run 1 places all three; run 2 places only b (a and c were filled in by grounding)
    runs = [(["a", "b", "c"], 3), (["b", "a", "c"], 1)]
    # Borda: points n - position for placed items, none for filled: a = 3 + 0, b = 2 + 3, c = 1 + 0
    np.testing.assert_array_equal(aggregate_rankings(runs, ["a", "b", "c"], method="borda"), [3, 5, 1])
    # mean rank over all positions: a (0 + 1) / 2, b (1 + 0) / 2, c (2 + 2) / 2; scores are minus that
    np.testing.assert_array_equal(aggregate_rankings(runs, ["a", "b", "c"], method="mean-rank"), [-0.5, -0.5, -2])

    cands = itemlist(["a", "b", "c"])
    borda = PermutationAggregator(Scripted(runs), n_permutations=2, method="borda").rerank([], cands)
    assert borda.order == ("b", "a", "c") and list(borda.items.scores) == [5, 3, 1]
    assert borda.diagnostics.missing_filled == 2
    mean = PermutationAggregator(Scripted(runs), n_permutations=2, method="mean-rank").rerank([], cands)
    assert mean.order == ("a", "b", "c") and list(mean.items.scores) == [-0.5, -0.5, -2]  # a, b tie: retriever order


def test_aggregation_rejects_bad_options() -> None:
    with pytest.raises(RerankError, match="n_permutations"):
        PermutationAggregator(PositionBiased(), n_permutations=0)
    with pytest.raises(RerankError, match="method"):
        PermutationAggregator(PositionBiased(), method="median")  # type: ignore[arg-type]


def reversed_llm(candidates: ItemList) -> Scripted:
    """A re-ranker that puts the retriever's order upside down."""
    return Scripted([(list(reversed(candidates.items)), len(candidates))])


@pytest.mark.parametrize("normalize", ["zscore", "rank"])
def test_blend_weight_zero_is_the_retriever_and_one_is_the_llm(normalize: str) -> None:
    cands = ItemList(tuple(SIX), np.array([9.0, 7.5, 7.0, 3.0, 2.0, -1.0]))
    zero = BlendedReranker(reversed_llm(cands), 0.0, normalize=normalize).rerank([], cands)  # type: ignore[arg-type]
    one = BlendedReranker(reversed_llm(cands), 1.0, normalize=normalize).rerank([], cands)  # type: ignore[arg-type]
    assert zero.order == tuple(SIX)
    assert one.order == tuple(reversed(SIX))
    assert one.diagnostics.reranker == "blend(scripted)"


def test_blend_arithmetic_by_hand() -> None:
    cands = ItemList(("a", "b", "c"), np.array([3.0, 2.0, -np.inf]))
    llm = ItemList(("c", "b", "a"), np.array([0.0, -1.0, -5.0]))
    # retriever: -inf is put 1 below the lowest finite score -> [3, 2, 1]: z = [1.2247, 0, -1.2247]
    z_ret = normalize_scores(cands.scores)
    np.testing.assert_allclose(z_ret, [np.sqrt(1.5), 0.0, -np.sqrt(1.5)])
    z_llm = normalize_scores(np.array([-5.0, -1.0, 0.0]))  # in candidate order a, b, c
    blended = blend_scores(cands, llm, 0.3)
    expected = 0.3 * z_llm + 0.7 * z_ret
    order = np.argsort(-expected)
    assert blended.items == tuple(np.array(["a", "b", "c"])[order])
    np.testing.assert_allclose(blended.scores, expected[order])
    np.testing.assert_allclose(normalize_scores(np.array([5.0, 1.0, 1.0]), "rank"), [1.0, 0.25, 0.25])
    np.testing.assert_array_equal(normalize_scores(np.array([2.0, 2.0])), [0.0, 0.0])
    with pytest.raises(RerankError, match="exactly the retrieved"):
        blend_scores(cands, ItemList(("a", "b"), np.zeros(2)), 0.5)


def test_choose_blend_weight_picks_the_argmax() -> None:
    choice = choose_blend_weight(lambda w: -(w - 0.3) ** 2)
    assert choice.weight == pytest.approx(0.3)
    assert choice.value == pytest.approx(0.0)
    assert len(choice.values) == 11
    seen: list[float] = []

    def ndcg(weight: float) -> float:
        seen.append(weight)
        return {0.0: 0.10, 0.25: 0.31, 0.5: 0.28, 1.0: 0.31}[weight]

    tied = choose_blend_weight(ndcg, grid=[0.0, 0.25, 0.5, 1.0])
    assert tied.weight == 0.25 and seen == [0.0, 0.25, 0.5, 1.0]  # a tie goes to the weight listed first
    with pytest.raises(RerankError, match="in \\[0, 1\\]"):
        choose_blend_weight(ndcg, grid=[1.5])


def test_diagnostics_summary_percentiles_and_combination() -> None:
    latencies = [0.1, 0.2, 0.3, 0.4, 2.0]
    diags = [Diagnostics(reranker="likelihood", model="m", backend="hf", n_candidates=20, latency_s=t,
                         prompt_tokens=100, scored_tokens=80) for t in latencies]
    s = summarize_diagnostics(diags)
    assert s.latency_p50_s == pytest.approx(0.3)
    assert s.latency_p95_s == pytest.approx(np.percentile(latencies, 95))
    assert s.latency_total_s == pytest.approx(3.0)
    assert s.processed_tokens_per_second == pytest.approx(5 * 180 / 3.0)
    assert s.format_error_rate == 0.0 and s.hallucination_rate == 0.0 and s.candidates == 100
    assert s.to_dict()["models"] == ["hf:m"]
    combined = Diagnostics.combine(diags[:2], reranker="permutation(likelihood)", latency_s=0.5)
    assert (combined.prompt_tokens, combined.latency_s, combined.n_candidates) == (200, 0.5, 20)
    assert summarize_diagnostics([]).users == 0


def test_no_candidates_give_an_empty_result_without_asking_the_model(movies: ItemCatalog) -> None:
    llm = ScriptedLLM([])  # any generation would fail: it has no scripted answers
    inner = ListwiseReranker(llm, movies)
    for reranker in (inner, PermutationAggregator(inner, 3), BlendedReranker(inner, 0.5)):
        result = reranker.rerank(["sw"], ItemList.empty())
        assert len(result.items) == 0 and result.n_ranked == 0
    assert llm.prompts == []
