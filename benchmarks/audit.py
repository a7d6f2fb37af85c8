"""The audit of the classic retrievers (issue 17): accuracy by user group, exposure, popularity bias, robustness,
and the two popularity mitigations with their cost in NDCG.

    .venv/bin/python benchmarks/audit.py run [--dataset movielens-100k --users 0 --models pop,itemknn,...]
    .venv/bin/python benchmarks/audit.py docs

Leave-one-out split, ``full`` protocol, every test user (``--users 0``) or a seeded sample. The models are the
benchmark configs' (benchmarks/configs/DATASET.toml), fitted on the training part and kept under
benchmarks/.models/ (``llm_rerank.fitted``), so a rerun does not refit SASRec. Mitigations (popularity
calibration at weight 0.5, a 30% long-tail quota and the popularity penalty at the weight chosen on validation
users, each re-ordering the model's top 100) are measured for EASE and SASRec. ``--rerank verbalizer`` adds the
LLM part of the audit for that re-ranker over SASRec's top 20 for the first ``--llm-users`` audited users
(bfloat16, as in the issue-14 table; ``recllm.eval.audit.audit_llm_reranker``): FaiRLLM's stated attributes,
prompt paraphrases and shuffled history, the position probe with ``--permutations`` cyclic rotations,
hallucination and the faithfulness of explanations. Writes
benchmarks/results/audit-DATASET.json, the HTML page beside it, and the section of docs/benchmarks.md (one
table per audited dataset).

``run --pipeline`` audits the service's default pipeline instead (its retriever and re-ranker on its LLM, as
``recllm serve`` builds them from ``ServiceConfig``) through ``recllm.eval.audit.run_audit``, the function behind
``recllm audit``: the retriever on every test user with the three mitigations, the re-ranker's lists for a seeded
sample of ``--rank-users`` users beside the retriever's own (and each mitigation of the re-ranked candidates), and
the LLM parts for ``--llm-users``. Writes benchmarks/results/audit-pipeline-DATASET.json and its page.

    .venv/bin/python benchmarks/audit.py run --pipeline --rank-users 500 --llm-users 50 --permutations 0
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

import _script
from _docs import machine_text, write_section
from llm_rerank import fitted
from recllm.data import load_dataset
from recllm.eval.audit import (
    AuditReport,
    audit_llm_reranker,
    audit_model,
    choose_penalty_weight,
    popularity_percentiles,
    user_groups,
)
from recllm.eval.audit_report import (
    FAITHFULNESS_HEADER,
    FAITHFULNESS_NOTE,
    POSITION_NOTE,
    RERANKED_HEADER,
    RERANKED_NOTE,
    ROBUSTNESS_HEADER,
    SENSITIVITY_HEADER,
    SUMMARY_HEADER,
    faithfulness_rows,
    group_table,
    position_header,
    position_rows,
    reranked_rows,
    summary_rows,
    write_audit,
)
from recllm.eval.candidates import select_users
from recllm.eval.llm_robustness import robustness_rows
from recllm.eval.protocols import queries_for_test
from recllm.eval.report import machine_info
from recllm.eval.runner import make_split
from recllm.eval.sensitivity import FAIRLLM_VALUES, MOVIELENS_ATTRIBUTES, SensitivityReport, sensitivity_rows

log = logging.getLogger("audit")

HERE = Path(__file__).resolve().parent
MODELS = ("pop", "itemknn", "ease", "als", "bpr", "sasrec")
MITIGATED = ("ease", "sasrec")
DATASETS = ("movielens-100k", "movielens-1m")


def _result(dataset: str, pipeline: bool = False) -> Path:
    return HERE / "results" / f"audit-{'pipeline-' if pipeline else ''}{dataset}.json"


PIPELINE_MITIGATIONS = ("popularity-calibration", "tail-quota", "popularity-penalty")


def run_pipeline(args: argparse.Namespace, command: str) -> None:
    """The audit of the service's default pipeline on its dataset (``--dataset`` must be the pipeline's)."""
    from recllm.eval.audit import run_audit
    from recllm.serve.service import ServiceConfig

    pipeline = ServiceConfig().pipeline
    if pipeline.reranker is None:
        raise SystemExit("the service's default pipeline has no re-ranker to audit")
    if args.dataset != pipeline.dataset:
        raise SystemExit(f"--pipeline audits the default pipeline on its dataset, {pipeline.dataset}")
    started = time.perf_counter()
    bundle = load_dataset(pipeline.dataset)
    retriever = pipeline.retriever.model
    reranker = pipeline.reranker.name
    report = run_audit(bundle, make_split(bundle), [retriever],
                       params={retriever: dict(pipeline.retriever.params), reranker: dict(pipeline.reranker.options)},
                       users=args.users or None, mitigations=PIPELINE_MITIGATIONS, rerankers=[reranker],
                       llm=pipeline.reranker_llm, llm_users=args.llm_users, permutations=args.permutations,
                       probe_users=args.probe_users or None, rank_users=args.rank_users,
                       on_model=lambda name, stage: log.info("%s: %s", name, stage))
    report.command = command
    write_audit(report, HERE / "results", f"audit-pipeline-{args.dataset}")
    payload = report.to_dict()
    payload["seconds"] = time.perf_counter() - started
    payload["llm"] = pipeline.reranker_llm
    payload["pipeline"] = pipeline.model_dump()
    _result(args.dataset, pipeline=True).write_text(json.dumps(payload, indent=1, default=float))


def run(args: argparse.Namespace, command: str) -> None:
    if args.pipeline:
        run_pipeline(args, command)
        return
    bundle = load_dataset(args.dataset)
    split = make_split(bundle)
    queries = select_users(queries_for_test(split), args.users or None, 0)
    ids = [str(u) for u in split.train.user_vocab.lookup_ids(queries.users)]
    groups = user_groups(bundle.dataset.user_attributes, ids)
    counts = np.bincount(split.train.items, minlength=split.train.n_items)
    audits = []
    penalty_choices: dict[str, dict] = {}
    started = time.perf_counter()
    for name in args.models.split(","):
        model, _ = fitted(name, bundle, split)
        mitigations = ("popularity-calibration", "tail-quota", "popularity-penalty") if name in MITIGATED else ()
        weight = None
        if mitigations:
            weight, by_weight = choose_penalty_weight(model, split, counts)
            penalty_choices[name] = {"weight": weight, "validation_top1_popularity": by_weight}
        audits.extend(audit_model(name, model, queries, groups, counts, mitigations=mitigations,
                                  penalty_weight=weight))
    llm_audits = []
    for reranker in filter(None, args.rerank.split(",")):
        sasrec, _ = fitted("sasrec", bundle, split)
        llm_audits.append(audit_llm_reranker(
            sasrec, split, queries, reranker, args.llm, bundle, users=args.llm_users,
            attributes={a: FAIRLLM_VALUES[a] for a in MOVIELENS_ATTRIBUTES}, permutations=args.permutations,
            probe_users=args.probe_users or None,
            on_stage=lambda stage, name=reranker: log.info("%s: %s", name, stage)))
    targets = np.concatenate(queries.targets)
    report = AuditReport(dataset=bundle.name, split="leave-one-out", protocol="full", k=10,
                         users=len(queries.users), seed=0,
                         targets_popularity=float(popularity_percentiles(counts)[targets].mean()),
                         groups_skipped=groups.skipped, models=audits,
                         sensitivity=[a.sensitivity for a in llm_audits],
                         prompt_robustness=[a.prompt_robustness for a in llm_audits if a.prompt_robustness],
                         position_bias=[a.position for a in llm_audits if a.position],
                         faithfulness=[a.faithfulness for a in llm_audits if a.faithfulness],
                         machine=machine_info(), command=command)
    write_audit(report, HERE / "results", f"audit-{args.dataset}")
    payload = report.to_dict()
    payload["seconds"] = time.perf_counter() - started
    payload["llm"] = args.llm
    payload["penalty_choices"] = penalty_choices
    _result(args.dataset).write_text(json.dumps(payload, indent=1, default=float))


def _report(raw: dict) -> AuditReport:
    """An AuditReport back from its JSON (enough of it for the tables)."""
    from recllm.eval.audit import ModelAudit, Robustness
    from recllm.eval.fairness import GroupReport, GroupStat, Spread
    from recllm.eval.llm_robustness import LLMRobustnessReport, RobustnessCondition
    from recllm.eval.llm_trust import Faithfulness, PositionBias
    from recllm.eval.sensitivity import AttributeSensitivity

    def model(m: dict) -> ModelAudit:
        groups = {metric: {a: GroupReport(**{**r, "groups": [GroupStat(**g) for g in r["groups"]]})
                           for a, r in by.items()} for metric, by in m["groups"].items()}
        robust = Robustness(**m["robustness"]) if m["robustness"] else None
        versus = tuple(m["versus"]) if m.get("versus") else None
        return ModelAudit(**{**m, "groups": groups, "robustness": robust, "versus": versus})

    models = [model(m) for m in raw["models"]]
    sensitivity = [SensitivityReport(s["reranker"], s["k"], s["users"], [
        AttributeSensitivity(a["attribute"], a["similarity"], {m: Spread(**x) for m, x in a["spread"].items()})
        for a in s["attributes"]]) for s in raw.get("sensitivity", [])]
    robustness = [LLMRobustnessReport(r["reranker"], r["k"], r["users"], [RobustnessCondition(**c)
                                                                         for c in r["conditions"]])
                  for r in raw.get("prompt_robustness", [])]
    pairs = ("spread_single_interval", "spread_aggregated_interval", "null_single", "null_aggregated")
    position = [PositionBias(**{**p, **{name: tuple(p[name]) for name in pairs if name in p}})
                for p in raw.get("position_bias", [])]
    trust = [Faithfulness(**f) for f in raw.get("faithfulness", [])]
    fields = {k: raw[k] for k in ("dataset", "split", "protocol", "k", "users", "seed", "targets_popularity",
                                  "groups_skipped", "date", "machine", "command")}
    return AuditReport(**fields, models=models, sensitivity=sensitivity, prompt_robustness=robustness,
                       position_bias=position, faithfulness=trust, reranked=[model(m) for m in raw.get("reranked", [])],
                       reranked_users=raw.get("reranked_users", 0),
                       reranked_targets_popularity=raw.get("reranked_targets_popularity", float("nan")))


def _table(header: list[str], rows: list[list[str]], align: str = "---") -> list[str]:
    return ["| " + " | ".join(header) + " |", "|---|" + f"{align}|" * (len(header) - 1),
            *("| " + " | ".join(r) + " |" for r in rows)]


def _group_lines(report: AuditReport, models: list, what: str) -> list[str]:
    """NDCG@k per group of each attribute for ``models``: a table per attribute, or for attributes with many
    groups the best and worst group and the gap per model."""
    k = report.k
    lines: list[str] = []
    for attribute, first in models[0].groups[f"NDCG@{k}"].items():
        if len(first.groups) > 8:  # too wide for a page: the gap per model, with its two groups
            lines += ["", f"NDCG@{k} by {attribute}{what} ({len(first.groups)} groups; the full table is in the "
                      f"JSON and the HTML page), {report.dataset}:", "", "| model | best | worst | gap (95%) |",
                      "|---|---|---|---:|"]
            for m in models:
                r = m.groups[f"NDCG@{k}"][attribute]
                by = {g.group: g for g in r.groups}
                best, worst = ((f"{g} {by[g].mean:.3f} ({by[g].users})" if g else "-") for g in (r.best, r.worst))
                gap = "-" if r.gap is None else (
                    f"{r.gap:.4f} [{r.gap_low:.4f}, {r.gap_high:.4f}]"
                    + ("" if r.p_adjusted is None else f", p = {r.p_adjusted:.3f} Holm")
                    + (" **(significant)**" if r.significant else ""))
                lines.append(f"| {m.name} | {best} | {worst} | {gap} |")
            continue
        header, rows = group_table(report, f"NDCG@{k}", attribute, models)
        lines += ["", f"NDCG@{k} by {attribute}{what} (mean [95%] (users)), {report.dataset}:", "",
                  *_table(header, rows)]
    return lines


def _lines(raw: dict) -> list[str]:
    """One audit's tables: the models' summary and groups, the re-ranked lists, then the LLM parts."""
    report = _report(raw)
    k = report.k
    first = report.models[0].name if report.models else "the first model"
    lines = ["", *_table([h.format(k=k) for h in SUMMARY_HEADER], summary_rows(report))]
    lines += _group_lines(report, report.models, "")
    if report.groups_skipped:
        lines += ["", "Not used as groups: " + "; ".join(f"{a} ({w})" for a, w in report.groups_skipped.items())
                  + "."]
    if report.reranked:
        lines += ["", f"Re-ranked lists, {report.reranked_users} seeded test users. {RERANKED_NOTE}", "",
                  *_table([h.format(k=k) for h in RERANKED_HEADER], reranked_rows(report), "---:")]
        lines += _group_lines(report, report.reranked, ", re-ranked lists")
    for sens in report.sensitivity:
        lines += ["", f"Stated user attributes (FaiRLLM) for the `{sens.reranker}` re-ranker on `{raw['llm']}` "
                  f"over {first}'s top 20, {sens.users} users, top {sens.k} compared with the neutral prompt's "
                  "(similarity 1 and spread 0: the stated attribute changes nothing):", "",
                  *_table(SENSITIVITY_HEADER, sensitivity_rows(sens), "---:")]
    for robust in report.prompt_robustness:
        lines += ["", f"Prompt robustness of the `{robust.reranker}` re-ranker, {robust.users} users, top "
                  f"{robust.k} (agreement with the configured prompt's ranking when the instructions are "
                  "reworded and when the history is shown shuffled):", "",
                  *_table([h.format(k=robust.k) for h in ROBUSTNESS_HEADER], robustness_rows(robust), "---:")]
    for bias in report.position_bias:
        lines += ["", f"Position bias of the `{bias.reranker}` re-ranker, {bias.users} users (NDCG@{bias.k} "
                  f"by the target's shown position). {POSITION_NOTE}", "",
                  *_table(position_header(bias), position_rows(bias), "---:")]
    if report.faithfulness:
        lines += ["", f"Faithfulness and hallucination. {FAITHFULNESS_NOTE}", "",
                  "| " + " | ".join(FAITHFULNESS_HEADER) + " |", "|---|" + "---:|" * 7 + "---|",
                  *("| " + " | ".join(r) + " |" for r in faithfulness_rows(report.faithfulness))]
        for f in report.faithfulness:
            for example in f.examples[:2]:
                text = " ".join(example["generated"].split()).replace("|", "/")
                lines += ["", f"> {text}  ", f"> *failed the check:* {'; '.join(example['violations'])}"]
    lines += ["", f"Command: `{raw['command']}` ({raw['seconds'] / 60:.1f} min).  ",
              f"Machine: {machine_text(raw['machine'])}; {raw['date']}."]
    return lines


PIPELINE_INTRO = ("**The default pipeline on {dataset}**: what `recllm serve` runs with its embedded defaults, the "
                  "retriever `{retriever}` ({params}) with the `{reranker}` re-ranker of its top {candidates} on "
                  "`{llm}`, audited through `recllm.eval.audit.run_audit` (the function behind `recllm audit`). "
                  "The retriever's rows cover every test user; the re-ranked rows a seeded sample; the LLM parts "
                  "the first users. The `{reranker}` prompt {position}")


def _pipeline_names(raw: dict) -> dict[str, str]:
    pipeline = raw["pipeline"]
    reranker = pipeline["reranker"]
    params = ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}"
                       for k, v in pipeline["retriever"]["params"].items()) or "defaults"
    position = ("never shows the candidates (each title is scored as the continuation of the history alone), so "
                "its ranking cannot depend on their shown order and the position probe is not run for it."
                if reranker["name"] == "likelihood" and not raw.get("position_bias") else
                "shows the candidates; its position probe is below.")
    return {"dataset": raw["dataset"], "retriever": pipeline["retriever"]["model"], "params": params,
            "reranker": reranker["name"], "candidates": str(reranker["candidates"]), "llm": raw["llm"],
            "position": position}


def docs(_: argparse.Namespace) -> None:
    lines = ["## Audit of the classic retrievers and the default pipeline: user groups, exposure, popularity, "
             "robustness (`full` protocol)",
             "",
             "Written by `benchmarks/audit.py` through `recllm.eval.audit` (the code behind `recllm audit`). "
             "Leave-one-out split; every unseen item ranked; models with the benchmark configs' hyper-parameters. "
             "Group intervals are bootstrap 95% over users; the gap compares the best and the worst group of at "
             "least 20 users, chosen on the point estimates; its p-value is a permutation test of the largest gap "
             "(the choice of the two groups is part of the test), Holm-adjusted over the model's attributes and "
             "both metrics (NDCG@10, HR@10), **significant** below 0.05. Long "
             "tail: items outside the 20% with the most training interactions. Popularity: percentile of "
             "training interactions (100: most popular). Robustness: users scored from the history alone, with "
             "and without its oldest 10%. Mitigations re-order the model's top 100: `popularity-calibration` "
             "(Steck's calibrated selection over head/mid/tail bins, weight 0.5), `tail-quota` (every prefix "
             "at least 30% long-tail items) and `popularity-penalty` ((1 - w) x relevance - w x popularity "
             "percentile, the weight w in brackets chosen on 1,000 seeded validation users, whose targets are "
             "their validation items, so that the first item is as popular as the next item users pick; no test "
             "user is involved)."]
    for dataset in DATASETS:
        if _result(dataset).exists():
            raw = json.loads(_result(dataset).read_text())
            lines += ["", f"**{raw['dataset']}**, {raw['users']} test users.", *_lines(raw)]
        if _result(dataset, pipeline=True).exists():
            raw = json.loads(_result(dataset, pipeline=True).read_text())
            lines += ["", PIPELINE_INTRO.format(**_pipeline_names(raw)), *_lines(raw)]
    write_section("audit", "\n".join(lines))


def main() -> None:
    parser = _script.parser(__doc__)
    parser.add_argument("--dataset", default="movielens-100k", choices=DATASETS)
    parser.add_argument("--users", type=int, default=0, help="seeded sample of test users; 0: all")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, in the table's order")
    parser.add_argument("--rerank", default="", help="LLM re-rankers audited for stated user attributes")
    parser.add_argument("--llm", default="hf,dtype=bfloat16")
    parser.add_argument("--llm-users", type=int, default=50)
    parser.add_argument("--permutations", type=int, default=4, help="cyclic rotations in the position probe")
    parser.add_argument("--probe-users", type=int, default=0, help="users of the position probe; 0: --llm-users")
    parser.add_argument("--pipeline", action="store_true", help="audit the service's default pipeline (its "
                        "retriever, re-ranker and LLM) through recllm.eval.audit.run_audit")
    parser.add_argument("--rank-users", type=int, default=500, help="--pipeline: users whose lists the re-ranker "
                        "re-orders for the accuracy, group, exposure and popularity rows")
    _script.main("audit.py", parser, run, docs)


if __name__ == "__main__":
    main()
