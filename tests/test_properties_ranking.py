"""Property-based tests of the rank arithmetic (``recllm.ranking``) and the metrics built on it
(``recllm.eval.metrics``): pessimistic ties, bounds, monotonicity, and invariance to shifting or scaling."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from recllm.eval.metrics import catalog_coverage, user_metrics
from recllm.ranking import hit_from_ranks, ndcg_from_ranks, pessimistic_ranks, reciprocal_rank, top_k
from recllm.testing.strategies import integer_scores

FAST = settings(max_examples=100, deadline=None)


@st.composite
def scores_and_targets(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    scores = draw(integer_scores())
    targets = np.asarray(draw(st.lists(st.integers(0, scores.shape[1] - 1), min_size=len(scores),
                                       max_size=len(scores))), dtype=np.int64)
    return scores, targets


def brute_force_ranks(scores: np.ndarray, targets: np.ndarray) -> list[int]:
    """The documented definition, item by item: #items scoring higher + #other items scoring equal."""
    out = []
    for row, target in zip(scores, targets, strict=True):
        higher = sum(1 for s in row if s > row[target])
        equal = sum(1 for j, s in enumerate(row) if s == row[target] and j != target)
        out.append(higher + equal)
    return out


# ---- ranks ------------------------------------------------------------------------------------------------
@FAST
@given(scores_and_targets())
def test_pessimistic_ranks_follow_the_definition_and_stay_in_range(case: tuple[np.ndarray, np.ndarray]) -> None:
    scores, targets = case
    ranks = pessimistic_ranks(scores, targets)
    assert ranks.dtype == np.int64 and ranks.shape == targets.shape
    assert ranks.tolist() == brute_force_ranks(scores, targets)
    assert ((ranks >= 0) & (ranks <= scores.shape[1] - 1)).all()  # 0-based: 1..n as positions


@FAST
@given(scores_and_targets())
def test_a_target_goes_after_every_item_with_its_score(case: tuple[np.ndarray, np.ndarray]) -> None:
    scores, targets = case
    ranks = pessimistic_ranks(scores, targets)
    for row, target, rank in zip(scores, targets, ranks, strict=True):
        not_worse = int((row >= row[target]).sum())  # the target itself included
        assert rank == not_worse - 1
    flat = np.zeros_like(scores)
    assert (pessimistic_ranks(flat, targets) == scores.shape[1] - 1).all()  # all tied: the worst rank


@FAST
@given(scores_and_targets(), st.integers(-100, 100), st.integers(1, 50))
def test_ranks_do_not_change_when_scores_are_shifted_or_scaled(case: tuple[np.ndarray, np.ndarray], shift: int,
                                                              scale: int) -> None:
    scores, targets = case
    ranks = pessimistic_ranks(scores, targets)
    assert (pessimistic_ranks(scores + shift, targets) == ranks).all()
    assert (pessimistic_ranks(scores * scale, targets) == ranks).all()
    assert (pessimistic_ranks(scale * scores + shift, targets) == ranks).all()


@FAST
@given(scores_and_targets())
def test_an_excluded_or_unscorable_target_gets_the_worst_rank(case: tuple[np.ndarray, np.ndarray]) -> None:
    scores, targets = case
    rows = np.arange(len(targets))
    for bad in (-np.inf, np.nan):
        marked = scores.copy()
        marked[rows, targets] = bad
        assert (pessimistic_ranks(marked, targets) == scores.shape[1] - 1).all()


@FAST
@given(scores_and_targets())
def test_excluding_other_items_never_worsens_a_target(case: tuple[np.ndarray, np.ndarray]) -> None:
    scores, targets = case
    excluded = scores.copy()
    others = np.ones_like(scores, dtype=bool)
    others[np.arange(len(targets)), targets] = False
    excluded[others & (scores >= 0)] = -np.inf
    assert (pessimistic_ranks(excluded, targets) <= pessimistic_ranks(scores, targets)).all()


# ---- top-k --------------------------------------------------------------------------------------------------
@FAST
@given(integer_scores(), st.integers(0, 14), st.data())
def test_top_k_is_the_stable_best_first_order_cut_at_k(scores: np.ndarray, k: int, data: st.DataObject) -> None:
    excluded = np.asarray(data.draw(st.lists(st.booleans(), min_size=scores.size, max_size=scores.size)))
    scores = np.where(excluded.reshape(scores.shape), -np.inf, scores)  # excluded items sink to the bottom
    best = top_k(scores, k)
    n = scores.shape[1]
    assert best.shape == (len(scores), min(k, n))
    stable = np.lexsort((np.broadcast_to(np.arange(n), scores.shape), -scores), axis=1)  # ties: lower index
    assert (best == stable[:, :min(k, n)]).all()
    if k >= 1:
        assert (top_k(scores, k - 1) == best[:, :k - 1]).all()  # a shorter list is a prefix


@FAST
@given(scores_and_targets())
def test_a_pessimistic_rank_is_never_better_than_the_position_in_top_k(case: tuple[np.ndarray, np.ndarray]
                                                                       ) -> None:
    scores, targets = case
    order = top_k(scores, scores.shape[1])
    positions = np.array([int(np.flatnonzero(row == t)[0]) for row, t in zip(order, targets, strict=True)])
    ranks = pessimistic_ranks(scores, targets)
    assert (ranks >= positions).all()
    distinct = np.array([len(np.unique(row)) == len(row) for row in scores])
    assert (ranks[distinct] == positions[distinct]).all()


# ---- metrics ------------------------------------------------------------------------------------------------
ranks_1d = st.lists(st.integers(0, 200), min_size=1, max_size=30).map(lambda v: np.asarray(v, dtype=np.int64))


@FAST
@given(ranks_1d, st.integers(1, 50))
def test_metrics_lie_in_the_unit_interval_and_ndcg_is_one_only_at_the_top(ranks: np.ndarray, k: int) -> None:
    ndcg, hit, mrr = ndcg_from_ranks(ranks, k), hit_from_ranks(ranks, k), reciprocal_rank(ranks)
    for values in (ndcg, hit, mrr):
        assert ((values >= 0) & (values <= 1)).all()
    assert ((ndcg == 1.0) == (ranks == 0)).all()
    assert ((hit == 1.0) == (ranks < k)).all()
    assert (ndcg <= hit).all()
    np.testing.assert_allclose(mrr, 1.0 / (ranks + 1.0))


@FAST
@given(ranks_1d, st.integers(1, 40), st.integers(0, 40))
def test_hit_rate_and_ndcg_never_fall_as_k_grows(ranks: np.ndarray, k: int, more: int) -> None:
    assert (hit_from_ranks(ranks, k) <= hit_from_ranks(ranks, k + more)).all()
    assert (ndcg_from_ranks(ranks, k) <= ndcg_from_ranks(ranks, k + more)).all()


@FAST
@given(st.lists(st.sets(st.integers(0, 30), min_size=1, max_size=5), min_size=1, max_size=8),
       st.integers(1, 20))
def test_user_metrics_are_bounded_and_perfect_exactly_for_a_perfect_list(target_ranks: list[set[int]],
                                                                        k: int) -> None:
    ranks = [np.asarray(sorted(r), dtype=np.int64) for r in target_ranks]
    metrics = user_metrics(ranks, k)
    assert set(metrics) == {f"HR@{k}", f"Recall@{k}", f"NDCG@{k}", "MRR"}
    for values in metrics.values():
        assert values.shape == (len(ranks),) and ((values >= 0) & (values <= 1 + 1e-12)).all()
    for u, r in enumerate(ranks):
        perfect = (r[:min(len(r), k)] == np.arange(min(len(r), k))).all()  # targets fill the top positions
        assert np.isclose(metrics[f"NDCG@{k}"][u], 1.0) == bool(perfect)
        assert metrics["MRR"][u] == 1.0 / (r.min() + 1.0)
        assert metrics[f"HR@{k}"][u] == float((r < k).any())
        if len(r) == 1:
            assert metrics[f"Recall@{k}"][u] == metrics[f"HR@{k}"][u]
            assert np.isclose(metrics[f"NDCG@{k}"][u], ndcg_from_ranks(r, k)[0])


@FAST
@given(scores_and_targets(), st.integers(-1000, 1000), st.integers(1, 10))
def test_metrics_from_scores_ignore_a_shift_of_all_scores(case: tuple[np.ndarray, np.ndarray], shift: int,
                                                          k: int) -> None:
    scores, targets = case
    before = user_metrics(list(pessimistic_ranks(scores, targets)[:, None]), k)
    after = user_metrics(list(pessimistic_ranks(scores + shift, targets)[:, None]), k)
    for name, values in before.items():
        np.testing.assert_array_equal(after[name], values)


@FAST
@given(integer_scores(), st.integers(1, 5))
def test_catalog_coverage_is_a_share_of_the_catalog(scores: np.ndarray, k: int) -> None:
    lists = top_k(scores, k)
    coverage = catalog_coverage(lists, scores.shape[1])
    assert 0 < coverage <= 1
    assert coverage == len(np.unique(lists)) / scores.shape[1]


@FAST
@example(np.array([[np.nan, np.nan, 1.0]]), 2)
@given(integer_scores().map(lambda s: np.where(s < 0, np.nan, s)), st.integers(1, 12))
def test_top_k_gives_k_distinct_items_even_with_nan_scores(scores: np.ndarray, k: int) -> None:
    best = top_k(scores, k)
    assert best.shape == (len(scores), min(k, scores.shape[1]))
    assert all(len(set(row.tolist())) == len(row) for row in best)
    for row, chosen in zip(scores, best, strict=True):  # an unscorable (NaN) item never precedes a scored one
        unscored = np.isnan(row[chosen])
        assert not (unscored[:-1] & ~unscored[1:]).any()
