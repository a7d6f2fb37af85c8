"""Distillation (issue 13): an LLM re-ranker's judgement moved into a student that runs with no LLM.

    .venv/bin/python benchmarks/distill.py run [--users 500 --train-users 400 --teacher verbalizer]
    .venv/bin/python benchmarks/distill.py docs

MovieLens-100K, leave-one-out, ``rerank-top20`` (LlamaRec): SASRec (the benchmark recipe, seed 0, fitted on the
training part with validation early stopping) retrieves 20 candidates; a target outside them is a miss.

1. The teacher (the default model's verbalizer) judges the top 20 of ``--train-users`` seeded users at
   validation time (training history, validation item as target); the student (``recllm.rerank.distilled``,
   ridge over LLM-free features and the LLM's item vectors) is fitted on those judgements; both blend weights
   are chosen on these validation lists (never on test users).
2. On ``--users`` seeded test users (history: train + validation), the same 20 candidates are ranked by the
   retriever, the teacher alone, the teacher blended, and the student; paired bootstrap intervals over users.
3. Latency per user: the teacher without its response cache on ``--latency-users`` users; the student on all.

The teacher's answers go through the persistent response cache (``$RECLLM_HOME/cache/llm.sqlite``), so a stopped
run resumes without repeating model calls. Results: benchmarks/results/distill-movielens-100k.json and the
distillation section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

import _script
from _docs import machine_text, paired_interval, write_section
from recllm.cli import parse_params
from recllm.data import load_dataset
from recllm.data.itemlist import ItemList
from recllm.eval.candidates import evaluate_order, evaluate_reranker, select_users, top_n_cases
from recllm.eval.protocols import queries_for_test
from recllm.eval.report import machine_info
from recllm.eval.runner import make_split
from recllm.llm.cache import CachedLLM
from recllm.pipeline import RetrieverConfig, build_llm, build_reranker, build_retriever, llm_catalog
from recllm.rerank.blend import BlendedReranker
from recllm.train.distill import distill

HERE = Path(__file__).resolve().parent
RESULT = HERE / "results" / "distill-movielens-100k.json"
DATASET = "movielens-100k"
log = logging.getLogger("distill")


def _bootstrap(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Mean of a - b and its paired bootstrap 95% interval over users."""
    return (float(np.mean(np.asarray(a) - np.asarray(b))), *paired_interval(a, b))


def run(args: argparse.Namespace, command: str) -> None:
    bundle = load_dataset(DATASET)
    split = make_split(bundle)
    params = {**parse_params(None, HERE / "configs" / f"{DATASET}.toml").get("sasrec", {}), "seed": 0,
              "num_threads": args.threads, **({"epochs": args.sasrec_epochs} if args.sasrec_epochs else {})}
    retriever = build_retriever(RetrieverConfig(model="sasrec", params=params), bundle)
    started = time.perf_counter()
    retriever.fit(split.train, valid=split.valid)
    fit_seconds = time.perf_counter() - started
    llm = CachedLLM(build_llm(args.llm))
    catalog = llm_catalog(args.llm, bundle.catalog)
    teacher = build_reranker(args.teacher, llm, catalog)

    started = time.perf_counter()
    student, report, _ = distill(teacher, retriever, split, bundle.catalog, users=args.train_users, n=20,
                                      embedder=args.embedder, seed=0,
                                      info={"dataset": DATASET, "retriever": "sasrec", "llm": args.llm})
    distill_seconds = time.perf_counter() - started
    log.info("distilled on %d lists in %.0f s (model calls: %d misses, %d cache hits)", report.lists,
             distill_seconds, llm.misses, llm.hits)

    queries = select_users(queries_for_test(split), args.users, seed=0)
    cases = top_n_cases(retriever, queries, n=20)
    vocab = split.train.item_vocab
    rows: dict[str, Any] = {}
    outcomes = {"retriever": evaluate_order(cases, name="sasrec"),
                "teacher": evaluate_reranker(teacher, cases, vocab, name=f"sasrec + {args.teacher}"),
                "teacher blended": evaluate_reranker(BlendedReranker(teacher, report.teacher_blend.weight), cases,
                                                     vocab, name=f"sasrec + blend({args.teacher})"),
                "student": evaluate_reranker(student, cases, vocab, name="sasrec + distilled")}
    for key, outcome in outcomes.items():
        summary = outcome.diagnostics or {}
        rows[key] = {"name": outcome.name, "metrics": {k: float(v) for k, v in outcome.result.metrics.items()},
                     "per_user_ndcg10": [float(x) for x in outcome.result.per_user["NDCG@10"]],
                     "latency_p50_s": summary.get("latency_p50_s")}

    agreement = []
    for case in cases.cases:
        ids = tuple(vocab.lookup_ids(case.candidates))
        candidates = ItemList(ids, np.asarray(case.retriever_scores, dtype=np.float64))
        history = vocab.lookup_ids(case.history)
        result = teacher.rerank(history, candidates)  # from the cache: the teacher row above asked the same
        by_item = dict(zip(result.items.items, result.items.scores, strict=True))
        rho = spearmanr(student.student_scores(history, candidates), [by_item[i] for i in ids]).statistic
        agreement.append(0.0 if np.isnan(rho) else float(rho))

    plain = build_reranker(args.teacher, build_llm(args.llm), catalog)  # no cache: real model time
    timed = select_users(queries, args.latency_users, seed=1)
    latency = evaluate_reranker(plain, top_n_cases(retriever, timed, n=20), vocab).diagnostics or {}
    payload = {"dataset": DATASET, "protocol": "rerank-top20", "retriever": {"model": "sasrec", "params": params,
                                                                             "fit_seconds": fit_seconds},
               "teacher": {"reranker": args.teacher, "llm": args.llm,
                           "latency_p50_s": latency.get("latency_p50_s"), "latency_users": args.latency_users},
               "embedder": args.embedder, "train_users": args.train_users, "test_users": len(cases.cases),
               "distill": report.as_dict(), "distill_seconds": distill_seconds,
               "test_agreement_spearman": float(np.mean(agreement)), "rows": rows, "command": command,
               "machine": machine_info(), "threads": args.threads,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    RESULT.parent.mkdir(exist_ok=True)
    RESULT.write_text(json.dumps(payload, indent=1))


def docs() -> None:
    if not RESULT.exists():
        return
    p = json.loads(RESULT.read_text())
    rows = p["rows"]
    base = np.asarray(rows["retriever"]["per_user_ndcg10"])
    teacher_latency = p["teacher"]["latency_p50_s"]
    lines = ["| ranker | NDCG@10 | HR@10 | minus SASRec (paired bootstrap 95%) | latency p50 per user |",
             "|---|---:|---:|---:|---:|"]
    for key, row in rows.items():
        mine = np.asarray(row["per_user_ndcg10"])
        diff = "-" if key == "retriever" else "{:+.4f} [{:+.4f}, {:+.4f}]".format(*_bootstrap(mine, base))
        latency = teacher_latency if key.startswith("teacher") else row["latency_p50_s"]
        lat = "-" if latency is None else (f"{latency * 1000:.2f} ms" if latency < 1 else f"{latency:.2f} s")
        lines.append(f"| {row['name']} | {row['metrics']['NDCG@10']:.4f} | {row['metrics']['HR@10']:.4f} | {diff} | "
                     f"{lat} |")
    d = p["distill"]
    teacher_best = max(("teacher", "teacher blended"), key=lambda k: rows[k]["metrics"]["NDCG@10"])
    lift_t = rows[teacher_best]["metrics"]["NDCG@10"] - rows["retriever"]["metrics"]["NDCG@10"]
    lift_s = rows["student"]["metrics"]["NDCG@10"] - rows["retriever"]["metrics"]["NDCG@10"]
    s_minus_t = _bootstrap(np.asarray(rows["student"]["per_user_ndcg10"]),
                           np.asarray(rows[teacher_best]["per_user_ndcg10"]))
    student_latency = rows["student"]["latency_p50_s"] or 0.0
    verdict = (f"The best teacher ({rows[teacher_best]['name']}) lifts NDCG@10 by {lift_t:+.4f}; the student keeps "
               f"{lift_s / lift_t:.0%} of that lift" if lift_t > 0 else
               f"No teacher has a lift: the best ({rows[teacher_best]['name']}) changes NDCG@10 by {lift_t:+.4f}, "
               f"and the student by {lift_s:+.4f}")
    speed = (f" at 1/{teacher_latency / student_latency:,.0f} of the teacher's latency" if teacher_latency and
             student_latency else "")
    body = "\n".join([
        "## Distillation: an LLM re-ranker's judgement without an LLM at request time",
        "",
        f"MovieLens-100K, leave-one-out, `rerank-top20`: SASRec (benchmark recipe, seed 0; fit "
        f"{p['retriever']['fit_seconds']:.0f} s) retrieves 20 candidates for {p['test_users']} seeded test users "
        f"(a target outside them is a miss). Teacher: the `{p['teacher']['reranker']}` re-ranker on "
        f"`{p['teacher']['llm']}`. "
        f"It judged the top 20 of {p['train_users']} validation-time lists (training history; validation item as "
        f"target), and the student (`distilled`: ridge over the retriever score, cosine of the candidate's "
        f"`{p['embedder']}` item vector to the history, popularity and the vector itself) learned from those "
        f"judgements; blend weights chosen on the same validation lists (teacher {d['teacher_blend']['weight']:.1f}, "
        f"student {d['student_blend']['weight']:.1f}). Teacher latency: uncached model calls on "
        f"{p['teacher']['latency_users']} users; student: all test users.",
        "",
        *lines,
        "",
        f"{verdict}{speed}; student minus best teacher {s_minus_t[0]:+.4f} [{s_minus_t[1]:+.4f}, {s_minus_t[2]:+.4f}].",
        f"What the student learned: held-out Spearman correlation with the teacher's scores "
        f"{d['agreement'][str(d['l2'])]:.3f} on validation lists (ridge {d['l2']:g}), "
        f"{p['test_agreement_spearman']:.3f} on the test lists; weights of the named features: "
        + ", ".join(f"{k} {v:+.3f}" for k, v in d["feature_weights"].items())
        + ". Validation NDCG@10 by teacher blend weight: "
        + ", ".join(f"{k}: {v:.4f}" for k, v in d["teacher_blend"]["by_weight"].items()) + ".",
        "",
        f"Command: `{p['command']}` ({p['distill_seconds']:.0f} s to judge and distil; torch threads "
        f"{p['threads']}).  ",
        f"Machine: {machine_text(p['machine'])}; {p['date']}.",
    ])
    write_section("distill", body)


def main() -> None:
    parser = _script.parser(__doc__)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--train-users", type=int, default=400)
    parser.add_argument("--latency-users", type=int, default=20)
    parser.add_argument("--teacher", default="verbalizer")
    parser.add_argument("--llm", default="hf")
    parser.add_argument("--embedder", default="lm")
    parser.add_argument("--sasrec-epochs", type=int, default=None, help="cap SASRec's epochs (a quick smoke run)")
    _script.main("distill.py", parser, run, lambda _: docs())


if __name__ == "__main__":
    main()
