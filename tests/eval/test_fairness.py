"""Fairness, exposure and agreement measures against hand-computed values, and their properties."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.data import Item, ItemCatalog, ItemList
from recllm.errors import ConfigError, RecllmError
from recllm.eval.fairness import (
    coverage,
    exposure_counts,
    gini,
    group_metric,
    holm_adjust,
    jaccard_at_k,
    kendall_tau,
    largest_gap_p_value,
    long_tail_share,
    overlap_at_k,
    paired_difference,
    prag_star_at_k,
    sensitivity_spread,
    serp_star_at_k,
)
from recllm.eval.sensitivity import FAIRLLM_VALUES, MOVIELENS_ATTRIBUTES, prompt_sensitivity, sensitivity_rows
from recllm.prompts import PromptBuilder
from recllm.rerank.base import Reranker, RerankResult
from recllm.rerank.diagnostics import Diagnostics


def test_jaccard_by_hand() -> None:
    assert jaccard_at_k([1, 2, 3], [2, 3, 4], 3) == pytest.approx(2 / 4)
    assert jaccard_at_k([1, 2, 3, 9], [2, 3, 4, 1], 2) == pytest.approx(1 / 3)  # {1, 2} against {2, 3}
    assert jaccard_at_k([1, 2, 3], [2, 1, 4], 2) == 1.0
    assert jaccard_at_k([], [], 5) == 1.0


def test_serp_star_by_hand() -> None:
    # the neutral list shares only item 3, placed third of 3 in the attributed list: weight 1 of 6
    assert serp_star_at_k([1, 2, 3], [3, 4, 5], 3) == pytest.approx(1 / 6)
    assert serp_star_at_k([1, 2, 3], [5, 6, 1], 3) == pytest.approx(3 / 6)  # item 1 first: weight 3
    assert serp_star_at_k([1, 2, 3], [3, 1, 2], 3) == pytest.approx(1.0)  # order within the neutral list is ignored


def test_prag_star_by_hand() -> None:
    # pairs of the attributed list (a<b, a<c, b<c); the neutral list a, c, b keeps a<b and a<c, not b<c
    assert prag_star_at_k(["a", "b", "c"], ["a", "c", "b"], 3) == pytest.approx(2 / 3)
    # only b is in the neutral list; it ranks above c, which is missing there: 1 of 3 pairs
    assert prag_star_at_k(["a", "b", "c"], ["b", "x", "y"], 3) == pytest.approx(1 / 3)
    assert prag_star_at_k(["a"], ["a"], 1) == 1.0 and prag_star_at_k(["a"], ["b"], 1) == 0.0


def test_sensitivity_spread_by_hand() -> None:
    spread = sensitivity_spread({"male": 0.8, "female": 0.6, "other": 0.7})
    assert spread.snsr == pytest.approx(0.2)
    assert spread.snsv == pytest.approx(np.sqrt(0.02 / 3))
    assert (spread.least_similar, spread.most_similar) == ("female", "male")
    with pytest.raises(RecllmError, match="at least one"):
        sensitivity_spread({})


def test_gini_exposure_tail_and_coverage_by_hand() -> None:
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)
    assert gini(np.array([1, 1, 1, 1])) == 0.0
    assert gini(np.array([1, 2, 3, 4])) == pytest.approx(0.25)
    assert gini(np.zeros(3)) == 0.0
    exposure = exposure_counts(np.array([[0, 1], [0, 2], [1, 0]]), 5)
    assert exposure.tolist() == [3, 2, 1, 0, 0]
    assert coverage(exposure) == pytest.approx(3 / 5)
    popularity = np.array([10, 9, 1, 1, 1, 0, 0, 0, 0, 0])
    shown = np.array([5, 5, 2, 0, 0, 0, 0, 0, 0, 0])
    assert long_tail_share(shown, popularity) == pytest.approx(2 / 12)  # head: the top 2 of 10 items
    with pytest.raises(RecllmError, match="outside"):
        exposure_counts(np.array([[0, 7]]), 5)
    with pytest.raises(RecllmError, match="negative"):
        gini(np.array([1, -1]))


def test_kendall_tau_and_overlap_by_hand() -> None:
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # one discordant pair of six
    assert kendall_tau([1, 1, 1], [2, 2, 2]) == 1.0 and kendall_tau([1, 1, 1], [1, 2, 3]) == 0.0
    assert overlap_at_k([1, 2, 3], [3, 4, 1], 3) == pytest.approx(2 / 3)
    with pytest.raises(RecllmError, match="same item twice"):
        overlap_at_k([1, 1, 2], [1, 2, 3], 3)
    with pytest.raises(RecllmError, match="one length"):
        kendall_tau([1, 2], [1, 2, 3])


def test_group_gap_with_interval_and_small_groups_left_out() -> None:
    values = np.r_[np.ones(30), np.zeros(30), np.full(5, 0.5), np.full(3, 0.2)]
    groups = ["A"] * 30 + ["B"] * 30 + ["C"] * 5 + [None] * 3
    report = group_metric(values, groups, attribute="gender", min_users=20)
    assert [(g.group, g.users, g.mean) for g in report.groups] == [("A", 30, 1.0), ("B", 30, 0.0), ("C", 5, 0.5)]
    assert (report.best, report.worst, report.gap) == ("A", "B", 1.0)
    assert report.gap_low == report.gap_high == 1.0 and report.gap_excludes_zero
    assert report.skipped == ["(unknown): 3 users", "C: 5 users"]


def test_group_gap_of_equal_groups_includes_zero() -> None:
    rng = np.random.default_rng(1)
    values = rng.random(400)
    report = group_metric(values, ["A", "B"] * 200, attribute="x")
    assert report.gap is not None and report.gap_low is not None and report.gap_high is not None
    assert report.gap_low <= report.gap <= report.gap_high
    assert not report.gap_excludes_zero
    lonely = group_metric(values[:30], ["A"] * 30, attribute="x")
    assert lonely.gap is None and not lonely.gap_excludes_zero
    with pytest.raises(RecllmError, match="group labels"):
        group_metric(values, ["A"], attribute="x")


lists = st.lists(st.integers(0, 30), min_size=1, max_size=12, unique=True)


@settings(max_examples=150, deadline=None)
@given(lists, lists, st.integers(1, 12))
def test_list_similarities_are_bounded_symmetric_where_defined_and_exact_at_the_ends(a: list[int], b: list[int],
                                                                                    k: int) -> None:
    for measure in (jaccard_at_k, serp_star_at_k, prag_star_at_k, overlap_at_k):
        assert 0.0 <= measure(a, b, k) <= 1.0 + 1e-12
    assert jaccard_at_k(a, b, k) == jaccard_at_k(b, a, k)
    full = a[:k]
    if len(full) == k:  # a full top K: identical lists give 1, disjoint ones 0
        for measure in (jaccard_at_k, serp_star_at_k, prag_star_at_k, overlap_at_k):
            assert measure(full, full, k) == pytest.approx(1.0)
            assert measure(full, [x + 100 for x in full], k) == 0.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=40))
def test_gini_is_in_range_and_ignores_order_and_scale(values: list[int]) -> None:
    x = np.asarray(values, dtype=np.float64)
    g = gini(x)
    assert 0.0 <= g <= 1 - 1 / len(x) + 1e-12
    assert gini(x[::-1]) == pytest.approx(g) and gini(3 * x) == pytest.approx(g)


# ---- sensitive-attribute prompting ---------------------------------------------------------------------------

class _Persona(Reranker):
    """Ranks the candidates in the retriever's order, reversed when the persona names a woman or a girl."""

    def __init__(self, persona: str | None) -> None:
        self.persona = persona

    @property
    def name(self) -> str:
        return "persona-test"

    def rerank(self, history: Sequence[str], candidates: ItemList, *, user: object | None = None) -> RerankResult:
        order = list(candidates.items)
        if self.persona in ("a female", "a girl"):
            order.reverse()
        diagnostics = Diagnostics(reranker=self.name, model="none", backend="none", n_candidates=len(order))
        return RerankResult(ItemList(tuple(order), np.arange(len(order), 0, -1.0)), diagnostics, len(order))


def test_prompt_sensitivity_finds_the_attribute_that_moves_the_ranking() -> None:
    items = tuple(f"i{n}" for n in range(20))
    lists = [(f"u{n}", ["h"], ItemList(items, np.zeros(20))) for n in range(3)]
    report = prompt_sensitivity(_Persona, lists, {a: FAIRLLM_VALUES[a] for a in MOVIELENS_ATTRIBUTES}, k=10)
    by = {a.attribute: a for a in report.attributes}
    assert report.users == 3 and report.reranker == "persona-test"
    for attribute in ("age", "occupation"):  # never reverses: identical to the neutral ranking
        for measure in ("Jaccard", "SERP*", "PRAG*"):
            assert by[attribute].spread[measure].snsr == 0.0 and by[attribute].spread[measure].snsv == 0.0
            assert all(v[measure] == 1.0 for v in by[attribute].similarity.values())
    gender = by["gender"]
    assert gender.similarity["a female"] == {"Jaccard": 0.0, "SERP*": 0.0, "PRAG*": 0.0}  # the bottom 10 instead
    assert gender.similarity["a male"] == {"Jaccard": 1.0, "SERP*": 1.0, "PRAG*": 1.0}
    assert gender.spread["Jaccard"].snsr == 1.0 and gender.spread["Jaccard"].snsv == pytest.approx(0.5)
    assert gender.spread["PRAG*"].least_similar in ("a girl", "a female")
    rows = sensitivity_rows(report)
    assert len(rows) == 3 * 3 and rows[3][:2] == ["gender", "Jaccard"] and rows[3][4] == "1.000"
    with pytest.raises(RecllmError, match="at least one user"):
        prompt_sensitivity(_Persona, [], {"gender": ("a male",)})
    with pytest.raises(RecllmError, match="at least one value"):
        prompt_sensitivity(_Persona, lists, {"gender": ()})


def test_the_persona_is_stated_in_the_prompt() -> None:
    catalog = ItemCatalog([Item("a", "Alpha", 1990, ("Drama",)), Item("b", "Beta", 1991, ("Comedy",))])
    plain = PromptBuilder(catalog, "rank-verbalizer").build(["a"], candidates=["a", "b"]).messages[-1]["content"]
    text = PromptBuilder(catalog, "rank-verbalizer", persona="a female").build(["a"], candidates=["a", "b"])
    content = text.messages[-1]["content"]
    assert "This user is a female." in content and "This user is" not in plain
    assert content.replace("This user is a female.\n\n", "") == plain
    with pytest.raises(ConfigError, match="persona must state"):
        PromptBuilder(catalog, "rank-verbalizer", persona="  ")


def test_holm_adjustment_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 -> 0.03, 0.06, 0.04 -> non-decreasing 0.03, 0.06, 0.06
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm_adjust([]) == []
    with pytest.raises(RecllmError, match=r"\[0, 1\]"):
        holm_adjust([0.2, 1.5])


@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_holm_never_lowers_a_p_value_and_keeps_their_order(p: list[float]) -> None:
    adjusted = holm_adjust(p)
    assert all(a >= q - 1e-12 and a <= 1 for a, q in zip(adjusted, p, strict=True))
    for i in range(len(p)):
        for j in range(len(p)):
            if p[i] < p[j]:
                assert adjusted[i] <= adjusted[j] + 1e-12


def test_largest_gap_permutation_test() -> None:
    separated = largest_gap_p_value(np.r_[np.zeros(30), np.ones(30)], ["A"] * 30 + ["B"] * 30, rounds=999)
    assert separated == pytest.approx(1 / 1000)  # no shuffle reaches the observed gap
    equal = largest_gap_p_value(np.ones(60), ["A", "B", "C"] * 20, rounds=200)
    assert equal == 1.0  # every shuffle ties the (zero) gap
    rng = np.random.default_rng(1)
    null = [largest_gap_p_value(rng.normal(size=90), ["A", "B", "C"] * 30, rounds=199, seed=s) for s in range(60)]
    assert 0.02 <= np.mean(np.asarray(null) < 0.1) <= 0.25  # about 10% under the null, choice of pair included
    with pytest.raises(RecllmError, match="two groups"):
        largest_gap_p_value(np.ones(5), ["A"] * 5)


def test_group_report_carries_the_permutation_p_value() -> None:
    rng = np.random.default_rng(0)
    values = np.r_[rng.random(100) * 0.2, 0.5 + rng.random(100) * 0.2]
    report = group_metric(values, ["low"] * 100 + ["high"] * 100, attribute="x")
    assert report.p_value is not None and report.p_value < 0.01 and report.significant
    flat = group_metric(rng.random(200), ["a", "b"] * 100, attribute="x")
    assert flat.p_value is not None and flat.p_value > 0.05 and not flat.significant


def test_paired_difference_by_hand() -> None:
    mean, low, high = paired_difference([0.5, 0.0, 1.0, 0.2], [0.25, 0.0, 0.5, 0.2])
    assert mean == pytest.approx((0.25 + 0 + 0.5 + 0) / 4)
    assert 0.0 <= low <= mean <= high <= 0.5  # resampled means of differences that lie in [0, 0.5]
    assert paired_difference([0.3, 0.1], [0.3, 0.1]) == (0.0, 0.0, 0.0)
    with pytest.raises(RecllmError, match="equally long"):
        paired_difference([0.1, 0.2], [0.1])
    with pytest.raises(RecllmError, match="non-empty"):
        paired_difference([], [])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=1, max_size=30), st.floats(-1, 1))
def test_a_paired_difference_is_shift_invariant(values: list[float], shift: float) -> None:
    base = np.asarray(values)
    mean, low, high = paired_difference(base + shift, base)
    assert mean == pytest.approx(shift) and low == pytest.approx(shift) and high == pytest.approx(shift)
