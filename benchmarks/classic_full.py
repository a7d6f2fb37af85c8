"""Classic recommenders on MovieLens-100K and -1M, `full` protocol: HR@10, NDCG@10, MRR, fit time,
recommendation time per 1,000 users; plus the time to load MovieLens-1M from the parsed cache.

    .venv/bin/python benchmarks/classic_full.py [--datasets movielens-100k,movielens-1m] [--models ...]

Hyper-parameters come from benchmarks/configs/<dataset>.toml (chosen on the validation items, never
the test items). Writes benchmarks/results/<dataset>-full.json and its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import subprocess
import sys
from pathlib import Path

from _docs import write_section
from recllm.cli import parse_params
from recllm.data import load_dataset
from recllm.eval import run_evaluation
from recllm.eval.report import Report

HERE = Path(__file__).resolve().parent
LOAD_SNIPPET = ("import time; t0 = time.perf_counter(); from recllm.data import load_dataset; "
                "t1 = time.perf_counter(); load_dataset('movielens-1m'); t2 = time.perf_counter(); "
                "print(t2 - t1, t2 - t0)")


def cache_load_seconds(repeats: int = 3) -> tuple[float, float]:
    """Best of ``repeats`` fresh processes: (load_dataset call alone, including importing recllm)."""
    load_dataset("movielens-1m")  # make sure the cache exists
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", LOAD_SNIPPET], capture_output=True, text=True, check=True)
        runs.append(tuple(float(x) for x in out.stdout.split()))
    return min(r[0] for r in runs), min(r[1] for r in runs)


def section(reports: list[Report], load: tuple[float, float] | None, command: str) -> str:
    lines = ["## Classic recommenders, `full` protocol", "",
             "Leave-one-out by time (last item test, second-last validation; equal timestamps keep file order), "
             "every item the user has not interacted with ranked, ties pessimistic. Models fit on the train part "
             "(SASRec stops early on validation NDCG@10); test histories are train + validation. HR@10 equals "
             "Recall@10 here (one target per user). ARP@10 is the mean number of training users of the "
             "recommended items. `rec s / 1k users` is scoring and ranking the whole catalogue for 1,000 users.",
             "", f"Command: `{command}`. The same table for one dataset from the CLI: "
             "`recllm evaluate --dataset movielens-1m --models pop,itemknn,ease,als,bpr,sasrec --protocol full "
             "--config benchmarks/configs/movielens-1m.toml` (hyper-parameters in that file were chosen on the "
             "validation items).", ""]
    for report in reports:
        lines.append(report.to_markdown())
    if load is not None:
        lines += [f"Loading MovieLens-1M from the parsed cache: {load[0]:.2f} s for the `load_dataset` call, "
                  f"{load[1]:.2f} s including `import recllm` (best of 3 fresh processes; target: under 2 s).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="movielens-100k,movielens-1m")
    parser.add_argument("--models", default="pop,itemknn,ease,als,bpr,sasrec")
    parser.add_argument("--param", action="append", default=[], help="MODEL.KEY=VALUE override")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/benchmarks.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    command = " ".join(["python benchmarks/classic_full.py", shlex.join(sys.argv[1:])]).strip()
    models = args.models.split(",")
    reports = []
    for name in args.datasets.split(","):
        config = HERE / "configs" / f"{name}.toml"
        params = parse_params(args.param, config if config.exists() else None)
        params = {m: p for m, p in params.items() if m in models}
        report = run_evaluation(load_dataset(name), models, protocol="full", ks=(10,), params=params)
        report.command = command
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / f"{name}-full.json").write_text(report.to_json())
        print(report.to_markdown(), flush=True)
        reports.append(report)
    load = cache_load_seconds() if "movielens-1m" in args.datasets else None
    if load:
        print(json.dumps({"ml1m_cache_load_s": load[0], "with_import_s": load[1]}))
    if not args.no_docs:
        write_section("classic-full", section(reports, load, command))


if __name__ == "__main__":
    main()
