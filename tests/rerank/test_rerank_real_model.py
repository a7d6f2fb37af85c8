"""The three re-rankers on the real default model: grounded permutations, diagnostics, calibration arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from rerank_helpers import CANDIDATES, HISTORY, ScriptedLLM, itemlist

from recllm.data import ItemCatalog, ItemList
from recllm.errors import ConfigError
from recllm.llm import LLM, CapabilityError
from recllm.prompts import PromptBuilder
from recllm.rerank import (
    LikelihoodReranker,
    ListwiseReranker,
    PermutationAggregator,
    RerankError,
    VerbalizerReranker,
    create_reranker,
    summarize_diagnostics,
)


@pytest.mark.parametrize(("name", "options"), [
    ("likelihood", {}),
    ("verbalizer", {}),
    ("listwise", {"k": 3}),
])
def test_each_reranker_returns_a_grounded_permutation_with_diagnostics(llm: LLM, movies: ItemCatalog,
                                                                       candidates: ItemList, name: str,
                                                                       options: dict[str, object]) -> None:
    reranker = create_reranker(name, llm, movies, **options)
    result = reranker.rerank(HISTORY, candidates)
    assert sorted(result.order) == sorted(CANDIDATES) and len(result.order) == len(CANDIDATES)
    d = result.diagnostics
    assert d.outside_result == 0
    assert summarize_diagnostics([d]).grounded_hallucination_rate == 0.0
    assert d.reranker == name and d.model == llm.model_name and d.backend == "hf"
    assert d.n_candidates == len(CANDIDATES)
    assert d.latency_s > 0 and d.prompt_tokens > 0 and d.llm_calls >= 1
    assert list(result.items.scores) == sorted(result.items.scores, reverse=True)
    if name == "listwise":
        assert d.generated_tokens > 0 and d.outputs == 1 and len(d.raw_outputs) == 1
    else:
        assert d.scored_tokens > 0 and d.outputs == 0 and d.format_errors == 0
        assert d.mentions == len(CANDIDATES) and d.missing_filled == 0 and result.n_ranked == len(CANDIDATES)
        assert np.all(np.isfinite(result.items.scores))


def test_calibration_subtracts_exactly_the_history_free_prior(llm: LLM, movies: ItemCatalog,
                                                              candidates: ItemList) -> None:
    calibrated = LikelihoodReranker(llm, movies, calibrate=True, length_norm=False)
    raw = LikelihoodReranker(llm, movies, calibrate=False, length_norm=False)
    cal = calibrated.score(HISTORY, candidates)
    unc = raw.score(HISTORY, candidates)
    np.testing.assert_allclose(cal.conditional, unc.score, atol=1e-9)
    np.testing.assert_allclose(unc.score - cal.score, cal.prior, atol=1e-9)
    assert np.all(cal.prior < 0) and not np.allclose(cal.prior, cal.prior[0])

    # the prior of one title, by hand: its log-likelihood after the same template with an empty history
    builder = PromptBuilder(movies, "rank-likelihood", llm=llm)
    free = builder.build([], candidates=["matrix"])
    assert "Nothing is known about this user yet." in free.text and "Star Wars" not in free.text
    by_hand = llm.logprobs(free.render(llm), [" The Matrix (1999)"])[0]
    i = CANDIDATES.index("matrix")
    assert cal.prior[i] == pytest.approx(by_hand, abs=1e-4)
    conditional = llm.logprobs(builder.build(HISTORY, candidates=CANDIDATES).render(llm), [" The Matrix (1999)"])[0]
    assert cal.score[i] == pytest.approx(conditional - by_hand, abs=1e-4)

    # the result ranks by the calibrated score; the default normalises only uncalibrated scores
    result = calibrated.rerank(HISTORY, candidates)
    assert result.items.scores[0] == pytest.approx(cal.score.max())
    assert LikelihoodReranker(llm, movies).length_norm is False
    assert LikelihoodReranker(llm, movies, calibrate=False).length_norm is True
    mean = LikelihoodReranker(llm, movies, calibrate=False).score(HISTORY, candidates)
    np.testing.assert_allclose(mean.score, unc.score / mean.n_tokens, atol=1e-9)


def test_the_prior_is_cached_per_title_across_users(llm: LLM, movies: ItemCatalog) -> None:
    reranker = LikelihoodReranker(llm, movies)
    reranker.rerank(["sw"], itemlist(["matrix", "fargo", "titanic"]))
    assert reranker.prior_cache_size == 3
    calls = llm.usage.score_calls
    second = reranker.rerank(["godfather"], itemlist(["fargo", "titanic", "matrix"]))
    assert llm.usage.score_calls == calls + 1  # only the history prompt: every prior came from the cache
    assert second.diagnostics.llm_calls == 1
    reranker.rerank(["godfather"], itemlist(["fargo", "alien"]))
    assert reranker.prior_cache_size == 4
    assert llm.usage.score_calls == calls + 3  # history prompt plus one prior call for the new title only


def test_verbalizer_limits_candidates_and_splits_on_request(llm: LLM, movies: ItemCatalog) -> None:
    many = itemlist([m for m in movies.ids if m not in HISTORY][:6])
    with pytest.raises(RerankError, match="at most 4 candidates"):
        VerbalizerReranker(llm, movies, max_candidates=4).rerank(HISTORY, many)
    split = VerbalizerReranker(llm, movies, max_candidates=4, overflow="split").rerank(HISTORY, many)
    assert sorted(split.order) == sorted(many.items)
    assert split.diagnostics.llm_calls == 2  # two groups of three
    # split scores are log(share of the group's label mass x group size): exp sums to the group size per group
    score = dict(zip(split.items.items, split.items.scores, strict=True))
    for group in (many.items[:3], many.items[3:]):
        assert sum(np.exp(score[item]) for item in group) == pytest.approx(3.0)


def test_permutation_aggregation_on_the_real_model(llm: LLM, movies: ItemCatalog) -> None:
    cands = itemlist(["titanic", "matrix", "fargo", "lion"])
    agg = PermutationAggregator(VerbalizerReranker(llm, movies), n_permutations=3, seed=1)
    result = agg.rerank(HISTORY, cands)
    assert sorted(result.order) == sorted(cands.items)
    assert result.diagnostics.llm_calls == 3 and result.diagnostics.reranker == "permutation(verbalizer)"


def test_factory_and_capability_errors(llm: LLM, movies: ItemCatalog) -> None:
    assert isinstance(create_reranker("Listwise", ScriptedLLM([]), movies), ListwiseReranker)
    with pytest.raises(ConfigError, match="unknown re-ranker 'pairwise'"):
        create_reranker("pairwise", llm, movies)
    with pytest.raises(ConfigError, match="calibrated: Extra inputs are not permitted"):
        create_reranker("likelihood", llm, movies, calibrated=True)
    with pytest.raises(ConfigError, match="re-ranker 'likelihood': calibrate: Input should be a valid boolean"):
        create_reranker("likelihood", llm, movies, calibrate="maybe")
    with pytest.raises(ConfigError, match="overflow: Input should be 'error' or 'split'"):
        create_reranker("verbalizer", llm, movies, overflow="wrap")
    assert create_reranker("likelihood", llm, movies, calibrate="false").calibrate is False  # as typed on a CLI
    with pytest.raises(CapabilityError, match="can_score"):
        create_reranker("likelihood", ScriptedLLM([]), movies)
    with pytest.raises(CapabilityError, match="can_score"):
        create_reranker("verbalizer", ScriptedLLM([]), movies)
    with pytest.raises(RerankError, match="not one string"):
        create_reranker("listwise", ScriptedLLM([]), movies).rerank("sw", itemlist(["matrix"]))


def test_verbalizer_with_retrieval_augmented_prompts(llm: LLM, movies: ItemCatalog, candidates: ItemList) -> None:
    reranker = create_reranker("verbalizer", llm, movies,
                               prompt_options={"evidence": "nearest-history", "evidence_k": 1})
    prompt = reranker.builder.build(HISTORY, candidates=candidates.items)  # type: ignore[attr-defined]
    lines = prompt.messages[-1]["content"].split("Candidates:\n")[1].splitlines()[:len(CANDIDATES)]
    named = [line.split("(close to: ")[1].removesuffix(")") for line in lines if "(close to: " in line]
    assert named and set(named) <= {movies[h].label() for h in HISTORY}
    result = reranker.rerank(HISTORY, candidates)
    plain = create_reranker("verbalizer", llm, movies).rerank(HISTORY, candidates)
    assert sorted(result.order) == sorted(CANDIDATES) and result.diagnostics.format_errors == 0
    assert result.diagnostics.prompt_tokens > plain.diagnostics.prompt_tokens
    assert not np.allclose(result.items.scores, plain.items.scores)
