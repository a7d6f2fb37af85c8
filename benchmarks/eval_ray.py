"""Evaluation with LLM re-ranking, and item-text embedding, in this process and on a local Ray with 1 and 2
workers (issue 16, part 3).

    .venv/bin/python benchmarks/eval_ray.py run [--users 60] [--reranker likelihood]
    .venv/bin/python benchmarks/eval_ray.py docs

Evaluation: MovieLens-100K ``rerank-top20`` over EASE, ``--users`` seeded test users, one LLM re-ranker on
the pinned default model (``recllm.eval.runner.run_evaluation``): in this process (torch on both cores, one
shard), and as Ray tasks over 8 shards of users with 1 and 2 worker CPUs, each worker loading the model once
from its spec (Ray gives each task one torch thread). Every run's figures (metrics, breakdowns, diagnostics
other than timings) are checked equal to the in-process run's. Embedding: every MovieLens-1M item text with
the pinned MiniLM, in one pass here and in 8 shards on Ray; the largest difference from one pass is reported
(each shard is batched on its own). Times are wall clock of the work alone; Ray's start is apart.
Writes benchmarks/results/eval-ray.json and its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

import _script
from _docs import machine_text, write_section
from recllm.data.registry import load_dataset
from recllm.distributed import ray_session
from recllm.eval.report import Report, machine_info
from recllm.eval.runner import make_split, run_evaluation
from recllm.llm.factory import create_embedder
from recllm.llm.item_text import embed_sharded, item_texts

HERE = Path(__file__).resolve().parent
RESULT = HERE / "results" / "eval-ray.json"
T = TypeVar("T")
WORK_COUNTERS = ("latency", "per_second", "seconds", "tokens", "llm_calls")
"""Diagnostics that count work rather than results: timings, and the tokens read and model calls made, which
depend on what each process's caches held from its earlier users (the model's prefix cache, the likelihood
re-ranker's calibration priors per item)."""


def _figures(report: Report) -> Any:
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if not any(t in k for t in WORK_COUNTERS)}
        return "nan" if isinstance(value, float) and np.isnan(value) else value

    return [plain({"model": r.model, "metrics": r.metrics, "diagnostics": r.diagnostics or {},
                   "breakdown": r.breakdown}) for r in report.rows]


def _on_local_ray(workers: int, work: Callable[[ModuleType], T]) -> tuple[T, float, float]:
    """``work(ray)`` on a local Ray with ``workers`` CPUs: its result, its seconds, and the seconds Ray took to
    start (until a first task has run)."""
    started = time.perf_counter()
    with ray_session("local", workers=workers) as ray:
        ray.get(ray.remote(lambda: 0).remote())
        start_s = time.perf_counter() - started
        started = time.perf_counter()
        out = work(ray)
        return out, time.perf_counter() - started, start_s


def _mode(workers: int) -> str:
    return f"local Ray, {workers} worker{'s' if workers > 1 else ''} (8 shards)"


def run(args: argparse.Namespace, command: str) -> None:
    bundle = load_dataset("movielens-100k")
    split = make_split(bundle)
    options: dict[str, Any] = dict(protocol="rerank-top20", ks=(10,), split=split, llm="hf", max_users=args.users,
                                   rerankers=[args.reranker])
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    reference = run_evaluation(bundle, ["ease"], **options)
    rows.append({"work": "evaluation", "mode": "in process (torch on 2 threads)", "workers": 0,
                 "seconds": time.perf_counter() - started, "identical": True, "ray_start_s": None})
    llm_row = reference.rows[-1]
    for workers in (1, 2):
        out, seconds, start_s = _on_local_ray(workers, lambda ray: run_evaluation(bundle, ["ease"], **options,
                                                                                  ray=ray, shards=8))
        rows.append({"work": "evaluation", "mode": _mode(workers), "workers": workers, "seconds": seconds,
                     "identical": _figures(out) == _figures(reference), "ray_start_s": start_s})
    big = load_dataset("movielens-1m")
    texts = item_texts(big.catalog, [str(i) for i in big.dataset.item_vocab.ids])
    embedder = create_embedder("st")
    started = time.perf_counter()
    one = embedder.embed(texts)
    rows.append({"work": "embedding", "mode": "in process (torch on 2 threads)", "workers": 0,
                 "seconds": time.perf_counter() - started, "max_abs_diff": 0.0, "ray_start_s": None})
    for workers in (1, 2):
        vectors, seconds, start_s = _on_local_ray(workers, lambda ray: embed_sharded("st", texts, shards=8, ray=ray))
        rows.append({"work": "embedding", "mode": _mode(workers), "workers": workers, "seconds": seconds,
                     "max_abs_diff": float(np.abs(vectors - one).max()), "ray_start_s": start_s})
    result = {"users": args.users, "reranker": args.reranker, "items_embedded": len(texts),
              "metrics": llm_row.metrics, "rows": rows, "command": command, "machine": machine_info(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    RESULT.write_text(json.dumps(result, indent=1))
    print(json.dumps(rows, indent=1))


def docs(_: argparse.Namespace) -> None:
    if not RESULT.exists():
        return
    r = json.loads(RESULT.read_text())
    lines = ["## Evaluation with LLM re-ranking and item-text embedding on Ray", "",
             f"Evaluation: MovieLens-100K `rerank-top20` over EASE, {r['users']} seeded test users, the "
             f"`{r['reranker']}` re-ranker on the pinned default model (`recllm evaluate ... --ray`); each Ray "
             "worker loads the model itself from its spec and re-ranks its shards. Embedding: the "
             f"{r['items_embedded']:,} MovieLens-1M item texts with the pinned MiniLM (`recllm batch embed --ray`). "
             "Wall-clock seconds of the work alone; starting Ray is apart. A worker's first shard includes "
             "loading the model.", "",
             "| work | mode | s | vs in process | vs 1 Ray worker | same figures | Ray start s |",
             "|---|---|---:|---:|---:|---|---:|"]
    for work in ("evaluation", "embedding"):
        rows = [row for row in r["rows"] if row["work"] == work]
        base = rows[0]["seconds"]
        one = next((row["seconds"] for row in rows if row["workers"] == 1), None)
        for row in rows:
            against_one = f"{one / row['seconds']:.2f}×" if one and row["workers"] else "–"
            start = f"{row['ray_start_s']:.1f}" if row["ray_start_s"] is not None else "–"
            same = (("yes" if row["identical"] else "NO") if work == "evaluation"
                    else ("–" if not row["workers"] else f"max diff {row['max_abs_diff']:.1e}"))
            lines.append(f"| {work} | {row['mode']} | {row['seconds']:.1f} | {base / row['seconds']:.2f}× | "
                         f"{against_one} | {same} | {start} |")
    lines += ["", "\"Same figures\": every metric, breakdown and diagnostic of the report equals the in-process "
              "run's, except the work counters: timings, tokens read and model calls, which depend on what each "
              "process's caches (the model's prefix cache, the likelihood re-ranker's calibration priors per "
              "item) held from its earlier users; with 2 workers each process has seen other users before a given "
              "one. Embeddings differ from one pass within float rounding because each shard is batched on its "
              "own.", "",
              f"Command: `{r['command']}`.  ", f"Machine: {machine_text(r['machine'])}; {r['date']}."]
    write_section("eval-ray", "\n".join(lines))


def main() -> None:
    parser = _script.parser(__doc__)
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--reranker", default="likelihood")
    _script.main("eval_ray.py", parser, run, docs)


if __name__ == "__main__":
    main()
