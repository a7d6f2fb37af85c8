import math
from collections.abc import Sequence

import numpy as np
import pytest

from recllm.data import DataBundle, Dataset
from recllm.data.splits import leave_one_out
from recllm.eval import build_queries, evaluate_full, evaluate_sampled, queries_for_test, run_evaluation
from recllm.eval.metrics import average_popularity, catalog_coverage, mae, rmse, user_metrics
from recllm.eval.protocols import sample_negatives
from recllm.models.base import Recommender
from recllm.ranking import ndcg_from_ranks, pessimistic_ranks, top_k


def test_hand_computed_single_target_metrics():
    m = user_metrics([np.array([0]), np.array([2]), np.array([15])], k=10)
    assert m["HR@10"].tolist() == [1, 1, 0]
    assert m["NDCG@10"].tolist() == pytest.approx([1.0, 1 / math.log2(4), 0.0])
    assert m["MRR"].tolist() == pytest.approx([1.0, 1 / 3, 1 / 16])
    assert m["Recall@10"].tolist() == m["HR@10"].tolist()


def test_hand_computed_multi_target_metrics():
    # targets at ranks 1 and 4 (0-based) with k=5: DCG = 1/log2(3) + 1/log2(6); IDCG = 1 + 1/log2(3)
    m = user_metrics([np.array([1, 4, 9])], k=5)
    assert m["Recall@5"][0] == pytest.approx(2 / 3)
    dcg = 1 / math.log2(3) + 1 / math.log2(6)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["NDCG@5"][0] == pytest.approx(dcg / idcg)
    assert m["MRR"][0] == pytest.approx(1 / 2)


def test_ties_are_pessimistic_and_top_k_is_deterministic():
    scores = np.array([[0.5, 0.9, 0.5, 0.5, -np.inf]])
    assert pessimistic_ranks(scores, np.array([0])).tolist() == [3]  # after both other 0.5s
    assert pessimistic_ranks(scores, np.array([1])).tolist() == [0]
    assert pessimistic_ranks(scores, np.array([4])).tolist() == [4]  # excluded target: worst
    assert top_k(scores, 3).tolist() == [[1, 0, 2]]
    assert top_k(scores, 5).tolist() == [[1, 0, 2, 3, 4]]
    flat = np.zeros((1, 1000))
    assert pessimistic_ranks(flat, np.array([7])).tolist() == [999]


def test_coverage_popularity_and_rating_errors():
    tops = np.array([[0, 1], [1, 2]])
    assert catalog_coverage(tops, 10) == pytest.approx(0.3)
    assert average_popularity(tops, np.array([10, 20, 30, 0])) == pytest.approx(20.0)  # items 0,1,1,2
    assert rmse(np.array([1, 3]), np.array([2, 5])) == pytest.approx(math.sqrt(2.5))
    assert mae(np.array([1, 3]), np.array([2, 5])) == pytest.approx(1.5)


class FixedScores(Recommender):
    """Scores each item by a fixed vector: lets a test know every rank in advance."""

    name = "fixed-test"

    def __init__(self, values: Sequence[float] = ()) -> None:
        super().__init__()
        self.values = list(values)

    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        pass

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.tile(np.asarray(self.values, dtype=np.float32), (len(histories), 1))


def test_full_protocol_excludes_history_and_ranks_targets(tiny: Dataset):
    split = leave_one_out(tiny)
    queries = queries_for_test(split)
    # item order a b c d e f; u1's test item d, history a b c -> among d e f
    model = FixedScores([6, 5, 4, 3, 2, 1]).fit(split.train)
    result = evaluate_full(model, queries, ks=(1, 10), popularity=split.train.item_popularity)
    users = [tiny.user_vocab.id(u) for u in queries.users]
    ranks = dict(zip(users, result.per_user["MRR"].tolist(), strict=True))
    assert ranks["u1"] == 1.0  # d is best among unseen d, e, f
    assert ranks["u2"] == pytest.approx(1 / 3)  # history a b; e behind c, d
    assert result.metrics["HR@1"] == pytest.approx(np.mean([r == 1.0 for r in ranks.values()]))
    assert result.n_users == 3


def test_constant_scores_cannot_look_good(ml100k: DataBundle):
    split = leave_one_out(ml100k.dataset)
    model = FixedScores([0.0] * ml100k.dataset.n_items).fit(split.train)
    result = evaluate_full(model, queries_for_test(split))
    assert result.metrics["HR@10"] == 0.0 and result.metrics["NDCG@10"] == 0.0


def test_sampled_negatives_are_unseen_and_seeded(tiny: Dataset):
    rng = np.random.default_rng(0)
    neg = sample_negatives(rng, np.array([0, 1, 2]), 3, 6)
    assert sorted(neg) == [3, 4, 5]
    split = leave_one_out(tiny)
    model = FixedScores([6, 5, 4, 3, 2, 1]).fit(split.train)
    q = build_queries(split.test_history(), split.test)
    a = evaluate_sampled(model, q, n=2, seen=tiny, seed=1)
    b = evaluate_sampled(model, q, n=2, seen=tiny, seed=1)
    assert a.metrics == b.metrics


def test_ml100k_reference_figures(ml100k: DataBundle):
    """Regression guard on the full protocol and the exact leave-one-out split: popularity's figure is
    fixed by the data; every collaborative model must clearly beat it."""
    report = run_evaluation(ml100k, ["pop", "itemknn", "ease", "als", "bpr"], protocol="full", ks=(10,))
    ndcg = {row.model: row.metrics["NDCG@10"] for row in report.rows}
    assert ndcg["pop"] == pytest.approx(0.0432, abs=0.001)
    assert 0.065 < ndcg["ease"] < 0.085
    for name in ("itemknn", "als", "bpr"):
        assert ndcg[name] > 1.15 * ndcg["pop"], (name, ndcg)
    assert report.rows[0].n_users == 943
    sampled = run_evaluation(ml100k, ["ease"], protocol="sampled-100", ks=(10,))
    assert sampled.rows[0].metrics["NDCG@10"] > 4 * ndcg["ease"]  # sampled figures are much higher
    rating = run_evaluation(ml100k, ["global-mean", "bias"], protocol="rating")
    rmse_by = {row.model: row.metrics["RMSE"] for row in rating.rows}
    assert rmse_by["bias"] < rmse_by["global-mean"] < 1.3


def test_nan_scores_rank_pessimistically():
    scores = np.array([[0.5, np.nan, 0.2, 0.9], [np.nan, 0.1, 0.3, 0.2]])
    # row 0: target 0.5 is behind 0.9 and the NaN; row 1: a NaN target is unscorable, the worst rank
    assert pessimistic_ranks(scores, np.array([0, 0])).tolist() == [2, 3]
    assert np.isfinite(ndcg_from_ranks(pessimistic_ranks(scores, np.array([0, 0])), 10)).all()
