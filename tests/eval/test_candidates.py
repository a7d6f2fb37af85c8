"""Candidate-set protocols: sampled-N and rerank-topN cases, rankers judged on the same cases, LLM rows with
their diagnostics, and the runner and report around them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from fakes import ScriptedLLM
from recllm.data import DataBundle
from recllm.data.itemlist import ItemList
from recllm.errors import ConfigError, RecllmError
from recllm.eval import (
    evaluate_full,
    evaluate_order,
    evaluate_reranker,
    evaluate_sampled,
    evaluate_scorer,
    make_split,
    parse_protocol,
    queries_for_test,
    run_evaluation,
    sampled_cases,
    select_users,
    top_n_cases,
)
from recllm.eval.candidates import popularity_percentiles, position_breakdown, ranks_from_order
from recllm.llm import LLM
from recllm.models.registry import create_model
from recllm.rerank import ListwiseReranker, Reranker, RerankResult
from recllm.rerank.diagnostics import Diagnostics


@pytest.fixture(scope="module")
def fitted(ml100k: DataBundle):
    split = make_split(ml100k)
    model = create_model("ease", {"l2": 100.0}).fit(split.train)
    return split, model


class Reverse(Reranker):
    """Puts the candidates in reverse order: a deterministic stand-in for an LLM."""

    @property
    def name(self) -> str:
        return "reverse"

    def rerank(self, history: Sequence[str], candidates: ItemList, *, user: object | None = None) -> RerankResult:
        order = candidates.items[::-1]
        diag = Diagnostics(reranker="reverse", model="none", backend="none", n_candidates=len(order), latency_s=0.01)
        return RerankResult(ItemList(order, np.arange(len(order), 0, -1, dtype=float)), diag, len(order))


def test_protocol_names_parse_and_bad_ones_are_named():
    assert parse_protocol("rerank-top20") == ("rerank-top", 20)
    assert parse_protocol("sampled-20") == ("sampled", 20)
    for bad in ("rerank-20", "sampled20", "top20", "rerank-top"):
        with pytest.raises(ConfigError, match="rerank-topN"):
            parse_protocol(bad)


def test_sampled_cases_hold_the_target_and_unseen_items_in_a_seeded_order(ml100k, fitted):
    split, _ = fitted
    queries = select_users(queries_for_test(split), 50, seed=3)
    cases = sampled_cases(queries, n=20, seen_sequences=ml100k.dataset.sequence, n_items=ml100k.dataset.n_items,
                          seed=3)
    again = sampled_cases(queries, n=20, seen_sequences=ml100k.dataset.sequence, n_items=ml100k.dataset.n_items,
                          seed=3)
    assert len(cases) == 50 and cases.protocol == "sampled-20"
    positions = set()
    for case, twin in zip(cases.cases, again.cases, strict=True):
        assert np.array_equal(case.candidates, twin.candidates)
        assert len(set(case.candidates.tolist())) == 20
        seen = set(ml100k.dataset.sequence(case.user).tolist())
        others = [c for c in case.candidates.tolist() if c != case.targets[0]]
        assert len(others) == 19 and not seen.intersection(others)
        positions.add(case.target_position())
    assert len(positions) > 5  # the target is not always shown in the same place


def test_select_users_is_a_seeded_subset_in_user_order(fitted):
    split, _ = fitted
    queries = queries_for_test(split)
    a, b = select_users(queries, 30, seed=1), select_users(queries, 30, seed=1)
    assert a.users.tolist() == b.users.tolist() == sorted(a.users.tolist())
    assert set(a.users.tolist()) <= set(queries.users.tolist())
    assert select_users(queries, 30, seed=2).users.tolist() != a.users.tolist()
    assert select_users(queries, None, seed=1) is queries
    with pytest.raises(RecllmError, match="positive"):
        select_users(queries, 0, seed=1)


def test_retriever_order_under_rerank_top_n_equals_its_full_figure(fitted):
    split, model = fitted
    queries = queries_for_test(split)
    full = evaluate_full(model, queries, ks=(5, 10))
    cases = top_n_cases(model, queries, n=20)
    shown = evaluate_order(cases, ks=(5, 10), name="ease")
    for metric in ("HR@10", "NDCG@10", "NDCG@5"):
        assert shown.result.metrics[metric] == pytest.approx(full.metrics[metric], abs=1e-12)
    case = cases.cases[0]
    assert not set(case.candidates.tolist()) & set(case.history.tolist())
    assert np.all(np.diff(case.retriever_scores) <= 0)  # best first


def test_a_target_outside_the_candidates_is_a_miss():
    assert ranks_from_order(np.array([4, 2, 9]), np.array([2, 7]), n_items=100).tolist() == [1, 100]


def test_classic_scorer_on_sampled_cases_matches_evaluate_sampled(ml100k, fitted):
    split, model = fitted
    queries = select_users(queries_for_test(split), 80, seed=0)
    cases = sampled_cases(queries, n=20, seen_sequences=ml100k.dataset.sequence, n_items=model.n_items, seed=0)
    scored = evaluate_scorer(model, cases)
    assert scored.result.metrics == evaluate_sampled(model, queries, n=20, seen=ml100k.dataset, seed=0).metrics
    random = evaluate_order(cases)
    assert scored.result.metrics["NDCG@10"] > random.result.metrics["NDCG@10"]


def test_reranker_rows_are_judged_on_the_same_cases_with_diagnostics(ml100k, fitted):
    split, model = fitted
    cases = top_n_cases(model, select_users(queries_for_test(split), 40, seed=0), n=10)
    original = evaluate_order(cases)
    reversed_ = evaluate_reranker(Reverse(), cases, ml100k.dataset.item_vocab, user_vocab=ml100k.dataset.user_vocab)
    # reversing the top 10 keeps HR@10 (same items) and moves every target to position 9 - p
    assert reversed_.result.metrics["HR@10"] == original.result.metrics["HR@10"]
    hits = original.per_case["HR@10"] > 0
    assert hits.any()
    assert reversed_.diagnostics is not None and reversed_.diagnostics["users"] == 40
    assert reversed_.diagnostics["grounded_hallucination_rate"] == 0.0
    top1 = [int(c.candidates[-1]) for c in cases.cases]
    assert reversed_.per_case["top1"].tolist() == top1


def test_listwise_rows_count_what_the_model_invented(ml100k, fitted):
    split, model = fitted
    cases = top_n_cases(model, select_users(queries_for_test(split), 3, seed=0), n=5)
    fake = ScriptedLLM(["1\n2\n9\n2", "nothing useful here", "7\n5\n4\n3\n2\n1"])
    outcome = evaluate_reranker(ListwiseReranker(fake, ml100k.catalog), cases, ml100k.dataset.item_vocab)
    d = outcome.diagnostics
    assert d is not None
    assert d["format_errors"] == 1 and d["duplicates"] == 1 and d["hallucinated"] == 2
    assert d["grounded_hallucination_rate"] == 0.0 and d["outside_result"] == 0


def test_position_and_popularity_breakdowns():
    pct = popularity_percentiles(np.array([0, 5, 5, 10]))
    assert pct.tolist() == pytest.approx([0.0, 50.0, 50.0, 100.0])
    from recllm.eval.candidates import RankerOutcome
    from recllm.eval.protocols import ProtocolResult

    outcome = RankerOutcome("x", ProtocolResult("sampled-4", {}, 4, 0.0),
                            {"NDCG@10": np.array([1.0, 0.5, 0.0, 0.25]),
                             "target_position": np.array([0, 1, 2, 3])})
    assert position_breakdown(outcome, "NDCG@10", 4, groups=2) == {"1-2": 0.75, "3-4": 0.125}


def test_runner_reports_llm_rows_with_diagnostics_on_the_real_model(ml100k, llm: LLM):
    report = run_evaluation(ml100k, ["pop"], protocol="rerank-top5", rerankers=["likelihood"], llm=llm,
                            max_users=2, ks=(5,), params={"likelihood": {"calibrate": True}})
    assert [r.model for r in report.rows] == ["pop", "pop + likelihood"]
    assert report.rows[0].diagnostics is None
    d = report.rows[1].diagnostics
    assert d is not None and d["users"] == 2 and d["grounded_hallucination_rate"] == 0.0
    assert d["models"] == [f"hf:{llm.model_name}"] and d["latency_p50_s"] > 0
    # a re-ranked top 5 holds the same items: HR@5 cannot change, only the order within
    assert report.rows[1].metrics["HR@5"] == report.rows[0].metrics["HR@5"]
    text = report.to_markdown()
    assert "LLM diagnostics" in text and "pop + likelihood" in text and "2 of 943 test users" in text
    assert "by the target's position among the 5 candidates" in text


def test_runner_rejects_rerankers_where_they_do_not_apply(ml100k, llm: LLM):
    with pytest.raises(ConfigError, match="sampled-N or rerank-topN"):
        run_evaluation(ml100k, ["pop"], protocol="full", rerankers=["likelihood"], llm=llm)
    with pytest.raises(ConfigError, match="K=10 exceeds the 5 re-ranked"):
        run_evaluation(ml100k, ["pop"], protocol="rerank-top5", rerankers=["likelihood"], llm=llm)
    with pytest.raises(ConfigError, match="needs at least one model"):
        run_evaluation(ml100k, [], protocol="rerank-top5", rerankers=["likelihood"], llm=llm)
    with pytest.raises(ConfigError, match="unknown re-ranker"):
        run_evaluation(ml100k, ["pop"], protocol="rerank-top5", rerankers=["pointwise"], llm=llm, max_users=1,
                       ks=(5,))
    with pytest.raises(ConfigError, match="not being evaluated"):
        run_evaluation(ml100k, ["pop"], protocol="rerank-top5", params={"verbalizer": {"k": 1}}, llm=llm,
                       ks=(5,))
