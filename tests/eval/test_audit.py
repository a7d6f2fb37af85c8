"""`recllm audit` for retrievers: groups from user attributes, the audited figures against their definitions,
the report's three forms (the HTML opened in Chromium) and the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recllm.cli import app
from recllm.data import DataBundle
from recllm.errors import RecllmError
from recllm.eval.audit import (
    AuditReport,
    lorenz_curve,
    popularity_percentiles,
    run_audit,
    sample_queries,
    top_lists,
    user_groups,
)
from recllm.eval.audit_report import audit_markdown, write_audit
from recllm.eval.runner import make_split


def test_user_groups_from_every_kind_of_attribute_column() -> None:
    frame = pd.DataFrame({
        "age": ["17", "24", "30", "56", "44"],
        "gender": ["F", "M", "", "M", "F"],
        "zip_code": [f"{10000 + i}" for i in range(5)],
        "score": [1.0, 2.0, 3.0, 4.0, 5.0],
    }, index=pd.Index(["u1", "u2", "u3", "u4", "u5"], name="user"))
    frame = pd.concat([frame] * 7)  # 35 rows: zip codes repeat, so only the column's size makes it unusable
    frame["zip_code"] = [f"{10000 + i}" for i in range(len(frame))]
    frame.index = pd.Index([f"u{i}" for i in range(len(frame))], name="user")
    frame["score"] = np.arange(len(frame), dtype=float)
    groups = user_groups(frame, ["u0", "u1", "u2", "u3", "u4", "nobody"])
    assert groups.labels["age"] == ["Under 18", "18-24", "25-34", "56+", "35-44", None]
    assert groups.labels["gender"] == ["F", "M", None, "M", "F", None]
    assert set(groups.labels["score"][:5]) <= {"0 to 8.5", "8.5 to 17", "17 to 25.5", "25.5 to 34"}
    assert groups.labels["score"][0] == "0 to 8.5" and groups.labels["score"][5] is None
    assert "zip_code" not in groups.labels and "35 distinct values" in groups.skipped["zip_code"]
    assert user_groups(None, ["u1"]).labels == {}


def test_popularity_percentiles_and_lorenz_curve() -> None:
    assert popularity_percentiles(np.array([5, 1, 3, 3])).tolist() == pytest.approx([100.0, 0.0, 50.0, 50.0])
    equal = lorenz_curve(np.ones(10), points=11)
    assert equal == pytest.approx(np.linspace(0, 1, 11).tolist())
    one = lorenz_curve(np.array([0, 0, 0, 8.0]), points=5)
    assert one == pytest.approx([0, 0, 0, 0, 1.0])


@pytest.fixture(scope="module")
def report(ml100k: DataBundle) -> AuditReport:
    split = make_split(ml100k)
    return run_audit(ml100k, split, ["pop", "ease"], users=300, params={"ease": {"l2": 200.0}},
                     mitigations=["popularity-calibration", "tail-quota", "popularity-penalty"])


def test_audit_figures_follow_their_definitions(report: AuditReport, ml100k: DataBundle) -> None:
    assert report.users == 300
    names = [m.name for m in report.models]
    assert names[:3] == ["pop", "pop + popularity-calibration", "pop + tail-quota"]
    assert names[4:7] == ["ease", "ease + popularity-calibration", "ease + tail-quota"]
    assert names[3].startswith("pop + popularity-penalty (") and names[7].startswith("ease + popularity-penalty (")
    pop, _, pop_quota, _, ease, ease_calibrated, ease_quota, ease_penalised = report.models
    assert set(pop.groups["NDCG@10"]) == {"age", "gender", "occupation"}
    assert "zip_code" in report.groups_skipped
    # each group's mean is the mean of its users' NDCG, the gap the best minus the worst compared group
    split = make_split(ml100k)
    from recllm.eval.candidates import select_users
    from recllm.eval.protocols import queries_for_test

    queries = select_users(queries_for_test(split), 300, 0)
    ids = [str(u) for u in split.train.user_vocab.lookup_ids(queries.users)]
    gender = ml100k.dataset.user_attributes.loc[ids, "gender"].to_numpy()
    ndcg = np.asarray(ease.per_user["NDCG@10"])
    by = {g.group: g for g in ease.groups["NDCG@10"]["gender"].groups}
    for value in ("F", "M"):
        assert by[value].mean == pytest.approx(ndcg[gender == value].mean())
        assert by[value].users == int((gender == value).sum()) and by[value].low <= by[value].mean <= by[value].high
    gap = ease.groups["NDCG@10"]["gender"]
    assert gap.gap == pytest.approx(abs(by["F"].mean - by["M"].mean))
    assert ease.ndcg == pytest.approx(ndcg.mean())
    # every gap is tested by permutation and Holm-adjusted within its model (each attribute, both metrics)
    tested = [r for by_attribute in ease.groups.values() for r in by_attribute.values() if r.p_value is not None]
    assert len(tested) == 6  # age, gender, occupation x NDCG, HR
    from recllm.eval.fairness import holm_adjust

    assert [r.p_adjusted for r in tested] == pytest.approx(holm_adjust([r.p_value for r in tested]))
    assert all(r.significant == ((r.p_adjusted or 1.0) < 0.05) for r in tested)
    # popularity shows everyone the same few items: high Gini, low coverage, no long tail, no history effect
    assert pop.gini > ease.gini and pop.coverage < ease.coverage and 0 <= pop.long_tail_share < ease.long_tail_share
    assert pop.top1_popularity == pytest.approx(100.0, abs=1.0)
    assert pop.robustness is not None and pop.robustness.overlap == 1.0 and pop.robustness.kendall_tau == 1.0
    assert ease.robustness is not None and 0 < ease.robustness.overlap < 1 and -1 <= ease.robustness.kendall_tau < 1
    assert 0 < report.targets_popularity < 100 and len(ease.lorenz) == 51
    # the quota puts at least 3 long-tail items in every top 10 of EASE's (its top 100 holds enough of them)
    assert ease_quota.long_tail_share >= 0.3 > ease.long_tail_share
    # popularity's top 100 unseen items are nearly all head: the quota finds long-tail ones only for the few users
    # who have seen most of the head
    assert pop.long_tail_share <= pop_quota.long_tail_share < 0.05
    # calibration moves the first item towards the users' own popularity mix, at a cost in NDCG
    assert ease_calibrated.top1_popularity < ease.top1_popularity and ease_calibrated.ndcg <= ease.ndcg + 0.02
    assert ease_calibrated.robustness is None
    # the penalty at its validation-chosen weight brings the first item's popularity nearer the targets'
    assert abs(ease_penalised.top1_popularity - report.targets_popularity) < abs(
        ease.top1_popularity - report.targets_popularity)


def _reranked_case(ml100k: DataBundle, users: int = 120) -> tuple:
    """EASE fitted on the training part, a seeded sample of ``users`` test users, and their top 20 as the audit
    hands them to a re-ranker (user id, history ids, candidates with the retriever's scores)."""
    from recllm.data.itemlist import ItemList
    from recllm.eval.candidates import select_users
    from recllm.eval.protocols import masked_scores, queries_for_test
    from recllm.pipeline import build_retriever
    from recllm.ranking import top_k

    split = make_split(ml100k)
    model = build_retriever("ease", ml100k, {"l2": 200.0}).fit(split.train)
    queries = select_users(queries_for_test(split), users, 0)
    vocab = split.train.item_vocab
    scores = masked_scores(model, queries.users, queries.histories)
    tops = top_k(scores, 20)
    lists = [(str(split.train.user_vocab.id(int(queries.users[row]))), vocab.lookup_ids(queries.histories[row]),
              ItemList(tuple(vocab.lookup_ids(tops[row])), scores[row, tops[row]])) for row in range(users)]
    assert lists == top_lists(model, split, queries, users=users, n=20)  # what the audit hands a re-ranker
    ids = [str(u) for u in split.train.user_vocab.lookup_ids(queries.users)]
    groups = user_groups(ml100k.dataset.user_attributes, ids)
    counts = np.bincount(split.train.items, minlength=split.train.n_items)
    return split, model, queries, lists, groups, counts


def test_reranked_lists_are_audited_against_the_models_own(ml100k: DataBundle) -> None:
    from recllm.data.itemlist import ItemList
    from recllm.eval.audit import audit_reranked

    split, model, queries, lists, groups, counts = _reranked_case(ml100k)
    vocab = split.train.item_vocab
    n = len(lists)

    def audit(reranked: list[ItemList], **options) -> list:
        return audit_reranked("ease + test", "ease", model, queries, vocab, lists, reranked, groups, counts,
                              **options)

    # the model's own order handed back: the same lists, a difference of exactly zero
    own, same = audit([shown for _, _, shown in lists])
    assert own.name == f"ease ({n} users)" and own.versus is None and same.versus == (0.0, 0.0, 0.0)
    assert same.per_user == own.per_user and same.gini == own.gini
    assert own.groups["NDCG@10"]["gender"].groups[0].users + own.groups["NDCG@10"]["gender"].groups[1].users == n
    # reversed: a target the model put at place p (of 20) is now at 19 - p, where NDCG@10 counts it if < 10
    reversed_lists = [ItemList(shown.items[::-1], -np.arange(20.0)) for _, _, shown in lists]
    _, backwards = audit(reversed_lists)
    for row, (_, _, shown) in enumerate(lists):
        target = vocab.id(int(queries.targets[row][0]))
        place = shown.items.index(target) if target in shown.items else None
        new = None if place is None else 19 - place
        expected = 1.0 / np.log2(new + 2) if new is not None and new < 10 else 0.0
        assert backwards.per_user["NDCG@10"][row] == pytest.approx(expected)
        assert own.per_user["HR@10"][row] == float(place is not None and place < 10)
    assert backwards.versus is not None
    assert backwards.versus[0] == pytest.approx(backwards.ndcg - own.ndcg)
    assert backwards.versus[1] <= backwards.versus[0] <= backwards.versus[2]
    # an oracle that puts the target first scores 1 exactly where the target is among the 20 candidates
    oracle = []
    for row, (_, _, shown) in enumerate(lists):
        target = vocab.id(int(queries.targets[row][0]))
        order = sorted(shown.items, key=lambda item: item != target)
        oracle.append(ItemList(tuple(order), -np.arange(20.0)))
    _, best, calibrated, quota = audit(oracle, mitigations=["popularity-calibration", "tail-quota"])
    inside = [vocab.id(int(queries.targets[r][0])) in shown.items for r, (_, _, shown) in enumerate(lists)]
    assert best.per_user["NDCG@10"] == [float(x) for x in inside]
    assert best.versus is not None and best.versus[1] > 0
    # mitigations re-order the re-ranked candidates (with the re-ranker's scores), as the pipeline does
    assert calibrated.name == "ease + test + popularity-calibration" and quota.name == "ease + test + tail-quota"
    assert quota.long_tail_share >= best.long_tail_share and calibrated.versus is not None
    stranger = next(i for i in vocab.ids if i not in lists[0][2].items)
    with pytest.raises(RecllmError, match="not a re-ordering"):
        audit([ItemList((*shown.items[:19], stranger), np.zeros(20)) if r == 0 else shown
               for r, (_, _, shown) in enumerate(lists)])


def test_the_reranked_users_are_a_seeded_sample_with_their_groups(ml100k: DataBundle) -> None:
    from recllm.eval.candidates import select_users
    from recllm.eval.protocols import queries_for_test

    split = make_split(ml100k)
    queries = select_users(queries_for_test(split), 300, 0)
    ids = [str(u) for u in split.train.user_vocab.lookup_ids(queries.users)]
    groups = user_groups(ml100k.dataset.user_attributes, ids)
    sampled, sampled_groups = sample_queries(queries, groups, 50, 0)
    assert len(sampled.users) == 50 and np.all(np.diff(sampled.users) > 0)  # in user order, no repeats
    assert set(sampled.users.tolist()) < set(queries.users.tolist())
    assert sampled.users.tolist() != queries.users[:50].tolist()  # a sample, not the first users
    assert sample_queries(queries, groups, 50, 0)[0].users.tolist() == sampled.users.tolist()
    sampled_ids = [str(u) for u in split.train.user_vocab.lookup_ids(sampled.users)]
    assert sampled_groups.labels == user_groups(ml100k.dataset.user_attributes, sampled_ids).labels
    everyone = sample_queries(queries, groups, 300, 0)
    assert everyone[0] is queries and everyone[1] is groups


def test_the_penalty_weight_is_chosen_on_validation_users_only(ml100k: DataBundle) -> None:
    from dataclasses import replace

    from recllm.eval.audit import PENALTY_GRID, choose_penalty_weight
    from recllm.pipeline import build_retriever

    split = make_split(ml100k)
    model = build_retriever("ease", ml100k, {"l2": 200.0}).fit(split.train)
    counts = np.bincount(split.train.items, minlength=split.train.n_items)
    weight, by_weight = choose_penalty_weight(model, split, counts, users=200)
    targets = by_weight["targets"]
    assert weight in PENALTY_GRID and by_weight["0.0"] > targets  # unpenalised first items are more popular
    assert abs(by_weight[str(weight)] - targets) == min(abs(by_weight[str(w)] - targets) for w in PENALTY_GRID)
    # the test part is never read: swapping it for anything else changes nothing
    assert choose_penalty_weight(model, replace(split, test=split.valid), counts, users=200) == (weight, by_weight)


def test_report_forms_and_the_page_in_chromium(report: AuditReport, tmp_path: Path) -> None:
    json_path, md_path, html_path = write_audit(report, tmp_path, "audit")
    data = json.loads(json_path.read_text())
    assert data["models"][4]["name"] == "ease" and len(data["models"][4]["per_user"]["NDCG@10"]) == 300
    markdown = md_path.read_text()
    assert markdown == audit_markdown(report)
    assert "## NDCG@10 by gender" in markdown and "| pop |" in markdown and "zip_code" in markdown
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no chromium on PATH (install Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(html_path.as_uri())
        images = page.locator("figure img")
        assert images.count() == 3 + 2  # age, gender, occupation; exposure; popularity
        widths = page.eval_on_selector_all("figure img", "els => els.map(e => e.naturalWidth)")
        assert all(w > 100 for w in widths)  # decoded pictures, not broken links
        assert page.locator("table").count() == 1 + 3
        assert page.locator("td", has_text="ease + tail-quota").count() >= 1
        assert page.locator("h2", has_text="NDCG@10 by occupation").count() == 1
        assert "ease" in page.locator("table").first.inner_text()
        browser.close()


def test_cli_audit_writes_three_files_and_refuses_bad_options(tmp_path: Path, monkeypatch) -> None:
    import recllm.eval.audit_report

    monkeypatch.setattr(recllm.eval.audit_report, "audits_dir", lambda: tmp_path / "audits")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["audit", "--models", "pop", "--users", "60", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.suffix for p in out.iterdir()) == [".html", ".json", ".md"]
    published = tmp_path / "audits" / "movielens-100k"
    assert sorted(p.name for p in published.iterdir()) == ["pop.html", "pop.json"]  # what a service shows at /audit
    assert (published / "pop.html").read_bytes() == next(out.glob("*.html")).read_bytes()
    for args, message in ((["--models", " "], "--models is empty"), (["--k", "0"], "--k must be"),
                          (["--split", "cold-items"], "cold-items"), (["--models", "nosuch"], "nosuch"),
                          (["--mitigate", "fairness"], "unknown mitigation")):
        bad = CliRunner().invoke(app, ["audit", *args, "--out", str(tmp_path)])
        assert bad.exit_code == 2 and message in bad.output, bad.output


def test_cli_audit_of_an_llm_reranker_for_stated_attributes(tmp_path: Path, monkeypatch) -> None:
    import recllm.eval.audit_report

    monkeypatch.setattr(recllm.eval.audit_report, "audits_dir", lambda: tmp_path / "audits")
    result = CliRunner().invoke(app, ["audit", "--models", "pop", "--users", "30", "--k", "5", "--rerank",
                                      "verbalizer", "--llm-users", "1", "--attributes", "gender",
                                      "--permutations", "0", "--no-explain", "--rank-users", "3",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads(next(tmp_path.glob("audit-*.json")).read_text())
    # the first 3 users' lists re-ranked by the real model, audited beside popularity's own for them
    assert [m["name"] for m in data["reranked"]] == ["pop (3 users)", "pop + verbalizer"]
    assert data["reranked_users"] == 3 and len(data["reranked"][1]["per_user"]["NDCG@5"]) == 3
    assert data["reranked"][0]["versus"] is None and len(data["reranked"][1]["versus"]) == 3
    assert "re-ranked lists: 3 users" in result.output
    # published for a service of popularity alone and for one that re-ranks popularity's lists with the verbalizer
    from recllm.eval.audit_report import published_audit

    for name in ("pop", "pop+verbalizer"):
        assert published_audit("movielens-100k", name).read_bytes() == next(tmp_path.glob("audit-*.html")).read_bytes()
        assert published_audit("movielens-100k", name, ".json").exists()
    [sensitivity] = data["sensitivity"]
    assert sensitivity["reranker"] == "verbalizer" and sensitivity["users"] == 1 and sensitivity["k"] == 5
    assert [a["attribute"] for a in sensitivity["attributes"]] == ["gender"]
    assert list(sensitivity["attributes"][0]["similarity"]) == ["a boy", "a girl", "a male", "a female"]
    for attribute in sensitivity["attributes"]:
        for value, measures in attribute["similarity"].items():
            assert value.startswith(("a ", "an ")) and all(0.0 <= x <= 1.0 for x in measures.values())
        for spread in attribute["spread"].values():
            values = list(spread["values"].values())
            assert spread["snsr"] == pytest.approx(max(values) - min(values))
    assert "## Stated user attributes (FaiRLLM): verbalizer" in next(tmp_path.glob("audit-*.md")).read_text()
    [robust] = data["prompt_robustness"]  # the same lists with paraphrased instructions and shuffled history
    assert robust["reranker"] == "verbalizer" and robust["users"] == 1
    assert [c["condition"] for c in robust["conditions"]] == ["paraphrase 1", "paraphrase 2", "shuffled history"]
    assert all(-1 <= c["kendall_tau"] <= 1 and 0 <= c["overlap"] <= 1 for c in robust["conditions"])
    assert "## Prompt robustness: verbalizer" in next(tmp_path.glob("audit-*.md")).read_text()
    # switched off (one user cannot fill the shown positions; the explanation check on the real model is
    # tests/eval/test_llm_trust.py's)
    assert data["position_bias"] == [] and data["faithfulness"] == []
    for args, message in ((["--llm-users", "0"], "--llm-users"), (["--attributes", "height"], "unknown attribute"),
                          (["--attributes", " "], "--attributes is empty"),
                          (["--permutations", "1"], "--permutations must be 0"),
                          (["--llm-users", "5"], "at least 20 users"),
                          (["--llm-users", "30", "--probe-users", "8"], "got 8"),
                          (["--rank-users", "-1"], "--rank-users must be")):
        bad = CliRunner().invoke(app, ["audit", "--models", "pop", "--rerank", "verbalizer", *args,
                                       "--out", str(tmp_path)])
        assert bad.exit_code == 2 and message in bad.output, bad.output


def test_reranked_rows_in_the_report_forms_and_the_page(report: AuditReport, ml100k: DataBundle,
                                                        tmp_path: Path) -> None:
    from dataclasses import replace

    from recllm.data.itemlist import ItemList
    from recllm.eval.audit import audit_reranked
    from recllm.eval.audit_report import reranked_rows

    split, model, queries, lists, groups, counts = _reranked_case(ml100k, users=60)
    rows = audit_reranked("ease + reversed", "ease", model, queries, split.train.item_vocab, lists,
                          [ItemList(shown.items[::-1], -np.arange(20.0)) for _, _, shown in lists], groups, counts,
                          mitigations=["tail-quota"])
    with_rows = replace(report, reranked=rows, reranked_users=60, reranked_targets_popularity=77.0)
    table = reranked_rows(with_rows)
    assert [r[0] for r in table] == ["ease (60 users)", "ease + reversed", "ease + reversed + tail-quota"]
    assert table[0][3] == "-" and table[1][3].startswith(("+", "-")) and table[1][-1] == "77.0"
    json_path, md_path, html_path = write_audit(with_rows, tmp_path, "audit")
    data = json.loads(json_path.read_text())
    assert data["reranked_users"] == 60 and len(data["reranked"][1]["per_user"]["NDCG@10"]) == 60
    assert data["reranked"][1]["versus"][0] == pytest.approx(rows[1].ndcg - rows[0].ndcg)
    markdown = md_path.read_text()
    assert "## Re-ranked lists: 60 users" in markdown and "### NDCG@10 by gender, re-ranked lists" in markdown
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no chromium on PATH (install Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(html_path.as_uri())
        # the models' 3 group plots, exposure and popularity; the re-ranked lists' 3 group plots and popularity
        assert page.locator("figure img").count() == 5 + 4
        assert all(w > 100 for w in page.eval_on_selector_all("figure img", "els => els.map(e => e.naturalWidth)"))
        assert page.locator("table").count() == 1 + 3 + 1 + 3
        assert page.locator("h3", has_text="NDCG@10 by age, re-ranked lists").count() == 1
        assert page.locator("td", has_text="ease + reversed + tail-quota").count() >= 1
        browser.close()


def test_a_pipeline_is_described_by_its_retriever_and_reranker_audit_first() -> None:
    from recllm.eval.audit_report import audit_names

    assert audit_names("ease", "likelihood") == ["ease+likelihood", "ease"]
    assert audit_names("sasrec", None) == ["sasrec"]
