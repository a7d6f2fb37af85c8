"""The audit's position probe and faithfulness check: probe lists as specified, NDCG by shown position and its
spread against hand-computed values for a re-ranker that keeps the shown order (the most position-biased one
there is), the report sections, and explanations checked on the real default model."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pytest

from recllm.data.itemlist import ItemList
from recllm.errors import RecllmError
from recllm.eval.audit import AuditReport
from recllm.eval.audit_report import audit_html, audit_markdown
from recllm.eval.llm_trust import faithfulness, position_bias, probe_lists
from recllm.llm.base import LLM
from recllm.rerank.base import Reranker, RerankResult
from recllm.rerank.diagnostics import Diagnostics
from recllm.testing.data import film_catalog

N = 20


class ShownOrder(Reranker):
    """Returns the candidates as shown, naming one made-up title per list in its 'raw output'."""

    @property
    def name(self) -> str:
        return "shown-order"

    def rerank(self, history: Sequence[str], candidates: ItemList, *, user: object | None = None) -> RerankResult:
        n = len(candidates)
        diagnostics = Diagnostics("shown-order", "none", "none", n, outputs=1, mentions=n + 1,
                                  hallucinated=("Made Up (1999)",))
        return RerankResult(ItemList(candidates.items, np.arange(n, 0, -1.0)), diagnostics, n)


def _lists(users: int) -> tuple[list[tuple[str, list[str], ItemList]], list[str]]:
    """Users whose retriever lists are 21 items; the target is in some lists and missing from others."""
    lists, targets = [], []
    for u in range(users):
        items = tuple(f"u{u}-i{j}" for j in range(N + 1))
        target = items[3] if u % 2 else f"u{u}-target"
        lists.append((f"u{u}", [f"u{u}-h{j}" for j in range(5)], ItemList(items, np.linspace(1, 0, N + 1))))
        targets.append(target)
    return lists, targets


def test_probe_lists_put_the_target_at_balanced_positions_among_the_retrievers_items() -> None:
    lists, targets = _lists(60)
    probes = probe_lists(lists, targets, n=N, seed=3)
    positions = [p for _, _, _, p in probes]
    assert sorted(np.bincount(positions, minlength=N)) == [3] * N  # 60 users, 20 positions: 3 each
    for (_, history, shown, position), (_, their_history, original), target in zip(probes, lists, targets,
                                                                                      strict=True):
        assert shown.items[position] == target and len(shown) == N and len(set(shown.items)) == N
        others = [i for i in original.items if i != target][:N - 1]
        assert set(shown.items) - {target} == set(others)  # the retriever's first 19 other items, shuffled
        assert np.all(shown.scores == shown.scores[0]) and history == their_history
    assert probes == probe_lists(lists, targets, n=N, seed=3)  # seeded
    with pytest.raises(RecllmError, match="needs 19"):
        probe_lists([("u", [], ItemList(("a", "b"), np.ones(2)))], ["x"], n=N)
    with pytest.raises(RecllmError, match="2 lists but 1 targets"):
        probe_lists(lists[:2], targets[:1], n=N)


def _ndcg(rank: int, k: int = 10) -> float:
    return 1 / np.log2(rank + 2) if rank < k else 0.0


def test_position_bias_of_a_reranker_that_keeps_the_shown_order() -> None:
    lists, targets = _lists(40)
    probes = probe_lists(lists, targets, n=N, seed=0)
    bias, results = position_bias(ShownOrder(), probes, targets, permutations=4, rounds=200)
    assert bias.buckets == ["1-5", "6-10", "11-15", "16-20"] and bias.counts == [10, 10, 10, 10]
    positions = np.asarray([p for _, _, _, p in probes])
    # one order: the target stays where it was shown
    single = [np.mean([_ndcg(p) for p in positions if lo <= p < lo + 5]) for lo in (0, 5, 10, 15)]
    # four rotations by 5, Borda: an item shown at p gets the same points as every item at p + 5j, so the
    # tie goes to the shown order: all items at p mod 5 = 0 first (p = 0, 5, 10, 15), then p mod 5 = 1, ...
    rotated = [np.mean([_ndcg((p % 5) * 4 + p // 5) for p in positions if lo <= p < lo + 5]) for lo in (0, 5, 10, 15)]
    assert bias.single == pytest.approx(single) and bias.aggregated == pytest.approx(rotated)
    assert bias.single[2] == bias.single[3] == 0.0  # shown 11th or later: outside the top 10
    assert bias.spread_single == pytest.approx((max(single) - min(single)) / np.mean([_ndcg(p) for p in positions]))
    assert bias.spread_aggregated < bias.spread_single  # rotation spreads the shown positions
    low, high = bias.spread_single_interval
    assert low <= bias.spread_single <= high
    # the shown order is all that matters here: far beyond what dealing the same users at random gives
    assert bias.spread_single > bias.null_single[1] > bias.null_single[0] > 0 and bias.p_single < 0.01
    assert [sorted(v) for v in bias.values_single] == [sorted(_ndcg(p) for p in positions if lo <= p < lo + 5)
                                                        for lo in (0, 5, 10, 15)]
    assert [r.order for r in results] == [shown.items for _, _, shown, _ in probes]
    few = probe_lists(lists[:3], targets[:3], n=N)  # three users: targets shown at positions 1-3 only
    with pytest.raises(RecllmError, match="positions 6-10, 11-15, 16-20; audit at least 20 users"):
        position_bias(ShownOrder(), few, targets[:3])
    with pytest.raises(RecllmError, match="at least 2 permutations"):
        position_bias(ShownOrder(), probes, targets, permutations=1)


class ByItemHash(ShownOrder):
    """Ranks by a hash of the item id, whatever the shown order: free of position bias by construction."""

    def rerank(self, history: Sequence[str], candidates: ItemList, *, user: object | None = None) -> RerankResult:
        result = super().rerank(history, candidates, user=user)
        order = tuple(sorted(candidates.items, key=lambda item: zlib.crc32(item.encode())))
        return RerankResult(ItemList(order, result.items.scores), result.diagnostics, len(order))


def test_the_no_effect_reference_deals_the_same_users_at_random() -> None:
    from recllm.eval.llm_trust import _no_effect, _spread

    rng = np.random.default_rng(0)
    same = [np.full(5, 0.5), np.full(5, 0.5)]
    assert _no_effect(same, rng, 50) == ((0.0, 0.0), 1.0)  # nothing to deal apart: p is 1
    apart = [np.zeros(4), np.ones(4)]
    (mean, high), p = _no_effect(apart, rng, 2000)
    assert _spread(apart) == 2.0 and 0 < mean < high <= 2.0
    assert p == pytest.approx(2 / 70, abs=0.01)  # 2 of the C(8, 4) = 70 deals split the zeros from the ones
    # no position effect: the observed spread is one deal among the random ones, so over many probes p is
    # spread evenly over (0, 1] and falls below 0.05 about one time in twenty
    lists, targets = _lists(40)
    ps = []
    for seed in range(30):
        probes = probe_lists(lists, targets, n=N, seed=seed)
        bias, _ = position_bias(ByItemHash(), probes, targets, rounds=200, seed=seed)
        ps.append(bias.p_single)
    assert 0.3 < float(np.mean(ps)) < 0.7 and sum(p < 0.05 for p in ps) <= 5


def test_the_report_shows_position_bias_and_faithfulness() -> None:
    from recllm.eval.llm_trust import Faithfulness

    lists, targets = _lists(20)
    probes = probe_lists(lists, targets, n=N)
    bias, _ = position_bias(ShownOrder(), probes, targets, rounds=50)
    trust = Faithfulness("shown-order", 20, {"hallucination_rate": 0.05, "grounded_hallucination_rate": 0.0,
                                             "format_error_rate": 0.0}, 20, 0.25, 1.5,
                         {"a wrong year for a title": 9}, [{"item": "x", "generated": "Jaws (1990) is <great>.",
                                                           "violations": ["gives Jaws the year 1990"]}])
    report = AuditReport("toy", "leave-one-out", "full", 10, 20, 0, 50.0, {}, [], position_bias=[bias],
                         faithfulness=[trust])
    markdown = audit_markdown(report)
    assert "## Position bias: shown-order, 20 users" in markdown and "positions 1-5 (5)" in markdown
    assert f"{bias.spread_single:.1%}" in markdown
    assert "| shown-order | 20 | 5.0% | 0.0% | 0.0% | 20 | 25.0% | 1.50 | a wrong year for a title 9 |" in markdown
    page = audit_html(report)
    assert "Position bias of shown-order" in page and "Jaws (1990) is &lt;great&gt;." in page


def test_faithfulness_checks_the_real_models_explanations(llm: LLM) -> None:
    catalog = film_catalog()
    history = ["star-wars", "empire", "alien"]
    results = [ShownOrder().rerank(history, ItemList(("jedi", "toy-story"), np.ones(2))),
               ShownOrder().rerank(history, ItemList(("matrix", "titanic"), np.ones(2)))]
    trust = faithfulness("shown-order", results, [history, history], llm, catalog, examples=5)
    assert trust.users == 2 and trust.explained == 2
    assert trust.diagnostics["hallucination_rate"] == pytest.approx(2 / 6)  # one made-up title per 3 mentions
    assert trust.diagnostics["grounded_hallucination_rate"] == 0.0
    assert 0.0 <= trust.true_share <= 1.0
    failed = round((1 - trust.true_share) * 2)
    assert len(trust.examples) == failed and all(e["violations"] and e["generated"] is not None
                                                 for e in trust.examples)
    assert sum(trust.violation_kinds.values()) == pytest.approx(trust.violations_per_explanation * 2)
    assert {e["item"] for e in trust.examples} <= {"jedi", "matrix"}
