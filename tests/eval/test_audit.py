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
from recllm.eval.audit import AuditReport, lorenz_curve, popularity_percentiles, run_audit, user_groups
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


def test_cli_audit_of_an_llm_reranker_for_stated_attributes(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["audit", "--models", "pop", "--users", "30", "--k", "5", "--rerank",
                                      "verbalizer", "--llm-users", "1", "--attributes", "gender",
                                      "--permutations", "0", "--no-explain", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
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
    assert "## Stated user attributes (FaiRLLM): verbalizer" in next(tmp_path.glob("*.md")).read_text()
    [robust] = data["prompt_robustness"]  # the same lists with paraphrased instructions and shuffled history
    assert robust["reranker"] == "verbalizer" and robust["users"] == 1
    assert [c["condition"] for c in robust["conditions"]] == ["paraphrase 1", "paraphrase 2", "shuffled history"]
    assert all(-1 <= c["kendall_tau"] <= 1 and 0 <= c["overlap"] <= 1 for c in robust["conditions"])
    assert "## Prompt robustness: verbalizer" in next(tmp_path.glob("*.md")).read_text()
    # switched off (one user cannot fill the shown positions; the explanation check on the real model is
    # tests/eval/test_llm_trust.py's)
    assert data["position_bias"] == [] and data["faithfulness"] == []
    for args, message in ((["--llm-users", "0"], "--llm-users"), (["--attributes", "height"], "unknown attribute"),
                          (["--attributes", " "], "--attributes is empty"),
                          (["--permutations", "1"], "--permutations must be 0"),
                          (["--llm-users", "5"], "at least 20 users"),
                          (["--llm-users", "30", "--probe-users", "8"], "got 8")):
        bad = CliRunner().invoke(app, ["audit", "--models", "pop", "--rerank", "verbalizer", *args,
                                       "--out", str(tmp_path)])
        assert bad.exit_code == 2 and message in bad.output, bad.output
