"""Popularity mitigation of a final list: bins, the tail quota and calibrated selection, by hand."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.data import ItemList
from recllm.errors import ConfigError
from recllm.rerank.mitigation import (
    PopularityBins,
    calibrate_popularity,
    first_under_penalties,
    mitigate,
    popularity_penalty,
    tail_quota,
)

# ten items: h0, h1 are head (top 20%), m0..m2 mid (next 30%), t0..t4 tail
COUNTS = {"h0": 100, "h1": 90, "m0": 50, "m1": 40, "m2": 30, "t0": 5, "t1": 4, "t2": 3, "t3": 2, "t4": 1}
BINS = PopularityBins(COUNTS)


def _list(items: list[str]) -> ItemList:
    return ItemList(tuple(items), np.arange(len(items), 0, -1, dtype=np.float64))


def test_bins_by_hand() -> None:
    assert [BINS.of(i) for i in COUNTS] == [0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
    assert BINS.of("brand-new") == 2
    assert BINS.mix(["h0", "m0", "t0", "t1"]).tolist() == [0.25, 0.25, 0.5]
    assert BINS.mix([]).tolist() == [0, 0, 0]
    with pytest.raises(ConfigError, match="leave room"):
        PopularityBins(COUNTS, head=0.5, mid=0.5)


def test_tail_quota_by_hand() -> None:
    ranked = _list(["h0", "h1", "m0", "t0", "m1"])
    # share 0.5: position 1 needs 0 long-tail items, 2 needs 1, 4 needs 2
    assert tail_quota(ranked, BINS, k=4, share=0.5).items == ("h0", "m0", "h1", "t0")
    assert tail_quota(ranked, BINS, k=4, share=0.0).items == ("h0", "h1", "m0", "t0")
    only_head = _list(["h0", "h1"])
    assert tail_quota(only_head, BINS, k=5, share=1.0).items == ("h0", "h1")  # none to promote
    with pytest.raises(ConfigError, match="between 0 and 1"):
        tail_quota(ranked, BINS, k=3, share=1.5)


def test_calibration_follows_the_history_mix() -> None:
    ranked = ItemList(("h0", "h1", "m0", "t0", "t1"), np.array([1.0, 0.9, 0.8, 0.7, 0.6]))
    assert calibrate_popularity(ranked, ["t2", "t3"], BINS, k=3, weight=0.0).items == ("h0", "h1", "m0")
    # a history of tail items only: with full weight the tail candidates come first
    assert calibrate_popularity(ranked, ["t2", "t3", "t4"], BINS, k=2, weight=1.0).items == ("t0", "t1")
    # a head-only history keeps the head first
    assert calibrate_popularity(ranked, ["h0", "h1"], BINS, k=2, weight=0.9).items == ("h0", "h1")
    # no history: the retriever's order
    assert calibrate_popularity(ranked, [], BINS, k=3, weight=0.9).items == ("h0", "h1", "m0")
    with pytest.raises(ConfigError, match="between 0 and 1"):
        calibrate_popularity(ranked, [], BINS, k=3, weight=2.0)


def test_popularity_penalty_by_hand() -> None:
    # percentiles of the 10 items by count: h0 100, h1 88.9, m0 77.8, t0 44.4, t4 0 (ranks 0..9 over 9)
    assert [round(BINS.percentile(i), 1) for i in ("h0", "h1", "m0", "t0", "t4")] == [100.0, 88.9, 77.8, 44.4, 0.0]
    assert BINS.percentile("brand-new") == 0.0
    ranked = ItemList(("h0", "m0", "t0"), np.array([1.0, 0.5, 0.0]))  # relevance 1, 0.5, 0
    assert popularity_penalty(ranked, BINS, k=3, weight=0.0).items == ("h0", "m0", "t0")
    # weight 0.5: h0 0.5 - 0.5, m0 0.25 - 0.389, t0 0 - 0.222 -> t0 (-0.222), m0 (-0.139)... by value
    values = {i: 0.5 * r - 0.5 * BINS.percentile(i) / 100 for i, r in zip(("h0", "m0", "t0"), (1.0, 0.5, 0.0),
                                                                         strict=True)}
    assert popularity_penalty(ranked, BINS, k=3, weight=0.5).items == tuple(sorted(values, key=lambda i: -values[i]))
    assert popularity_penalty(ranked, BINS, k=3, weight=1.0).items == ("t0", "m0", "h0")  # least popular first
    assert popularity_penalty(ranked, BINS, k=2, weight=0.5).scores.tolist() == [2.0, 1.0]
    with pytest.raises(ConfigError, match="between 0 and 1"):
        popularity_penalty(ranked, BINS, k=3, weight=-0.1)
    with pytest.raises(ConfigError, match=r"between 0 and 1, got 1\.5"):
        first_under_penalties(ranked, BINS, [0.2, 1.5])
    # by name, as a pipeline and the audit apply it
    assert mitigate("popularity-penalty", ranked, [], BINS, k=3, weight=1.0, share=0.0).items == ("t0", "m0", "h0")
    assert mitigate("tail-quota", ranked, [], BINS, k=2, weight=1.0, share=0.0).items == ("h0", "m0")
    with pytest.raises(ConfigError, match="unknown mitigation 'fair'"):
        mitigate("fair", ranked, [], BINS, k=3, weight=0.5, share=0.3)


@settings(max_examples=80, deadline=None)
@given(st.permutations(list(COUNTS)), st.integers(1, 10), st.floats(0, 1), st.floats(0, 1),
       st.lists(st.sampled_from(list(COUNTS)), max_size=6))
def test_mitigations_return_k_distinct_candidates(order: list[str], k: int, share: float, weight: float,
                                                  history: list[str]) -> None:
    ranked = _list(order)
    quota = tail_quota(ranked, BINS, k=k, share=share)
    calibrated = calibrate_popularity(ranked, history, BINS, k=k, weight=weight)
    penalised = popularity_penalty(ranked, BINS, k=k, weight=weight)
    weights = [0.0, weight, 1.0]  # the weight search's one pass agrees with the mitigation itself
    assert first_under_penalties(ranked, BINS, weights) == [popularity_penalty(ranked, BINS, k=1, weight=w).items[0]
                                                           for w in weights]
    for out in (quota, calibrated, penalised):
        assert len(out.items) == k and len(set(out.items)) == k and set(out.items) <= set(order)
    tails = [BINS.of(i) > 0 for i in quota.items]
    available = sum(BINS.of(i) > 0 for i in order)
    for j in range(1, k + 1):  # every prefix meets the quota while long-tail candidates last
        assert sum(tails[:j]) >= min(int(np.floor(share * j + 1e-9)), available)
