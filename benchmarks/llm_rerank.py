"""LLM re-rankers with the default model (SmolLM2-135M-Instruct) against classic rankers, on the same candidates.

    .venv/bin/python benchmarks/llm_rerank.py ml1m-sampled [--users 500 --subset 100]
    .venv/bin/python benchmarks/llm_rerank.py ml100k-top20 [--users 300]
    .venv/bin/python benchmarks/llm_rerank.py latency [--users 10]

- ``ml1m-sampled``: MovieLens-1M, ``sampled-20`` (LLMRank): seeded test users, each target with 19 uniform
  unseen items in a seeded random order. Rows: the random shown order, popularity, SASRec, the likelihood
  re-ranker with and without calibration, the verbalizer; on a seeded subset also the listwise re-ranker
  and the verbalizer with cyclic permutation aggregation (position bias before and after).
- ``ml100k-top20``: MovieLens-100K, ``rerank-top20`` (LlamaRec): SASRec's top 20 re-ranked; a target
  outside them is a miss. SASRec alone on every test user and on the re-ranked users.
- ``latency``: per-user latency and throughput of each re-ranker at 20 candidates, and the likelihood
  scoring call with and without reuse of the prompt's key/value cache, in one run.

Each section writes benchmarks/results/llm-<section>.json (also after every row, so a stopped run keeps
what it measured) and its part of docs/benchmarks.md. Torch runs on one thread (``--threads``); the LLM
answers go through a response cache in a fresh temporary file, so a row that repeats calls of an earlier
row (uncalibrated likelihood, rotation 0 of the permutations) costs no model time, and its latency is not
reported.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _docs import write_section
from recllm.cli import parse_params
from recllm.data import load_dataset
from recllm.data.bundle import DataBundle
from recllm.data.splits import Split
from recllm.eval.candidates import (
    Cases,
    RankerOutcome,
    evaluate_order,
    evaluate_reranker,
    evaluate_scorer,
    sampled_cases,
    select_users,
    top_n_cases,
)
from recllm.eval.protocols import queries_for_test
from recllm.eval.report import Report
from recllm.eval.runner import add_outcome_row, make_split
from recllm.llm import create_llm
from recllm.llm.base import LLM
from recllm.llm.cache import CachedLLM, ResponseCache
from recllm.models.base import Recommender
from recllm.models.registry import create_model
from recllm.rerank import (
    LikelihoodReranker,
    ListwiseReranker,
    PermutationAggregator,
    Reranker,
    VerbalizerReranker,
)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MODELS = HERE / ".models"
log = logging.getLogger("llm_rerank")


def fitted(name: str, bundle: DataBundle, split: Split) -> tuple[Recommender, float]:
    """The model with the benchmark config's hyper-parameters, fitted on the train part (saved under
    benchmarks/.models/ and reloaded when the same dataset, model and parameters come again)."""
    config = HERE / "configs" / f"{bundle.name}.toml"
    params = parse_params(None, config if config.exists() else None).get(name, {})
    folder = MODELS / f"{bundle.name}-{name}"
    stamp = json.dumps(params, sort_keys=True)
    if (folder / "benchmark-params.json").exists() and (folder / "benchmark-params.json").read_text() == stamp:
        log.info("loading %s from %s", name, folder)
        return Recommender.load(folder), 0.0
    model = create_model(name, params)
    started = time.perf_counter()
    model.fit(split.train, valid=split.valid)
    seconds = time.perf_counter() - started
    model.save(folder)
    (folder / "benchmark-params.json").write_text(stamp)
    log.info("fitted %s in %.0f s", name, seconds)
    return model, seconds


def cached_llm(tmp: Path) -> LLM:
    """The default model behind a response cache in a fresh file (no answers from earlier runs)."""
    return CachedLLM(create_llm("hf"), ResponseCache(tmp / "responses.sqlite"))


def progress(name: str, total: int) -> Callable[[int], None]:
    started = time.perf_counter()
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if done[0] % 25 == 0 or done[0] == total:
            elapsed = time.perf_counter() - started
            log.info("%s: %d/%d users, %.0f s (%.1f s/user)", name, done[0], total, elapsed, elapsed / done[0])

    return tick


def subset(cases: Cases, size: int, seed: int) -> Cases:
    """A seeded subset of the cases, in their order."""
    if size >= len(cases):
        return cases
    rows = np.sort(np.random.default_rng(seed + 1).choice(len(cases), size=size, replace=False))
    return Cases(cases.protocol, tuple(cases.cases[i] for i in rows), cases.n_items)


class Run:
    """Collects rows into Reports (one per case set) and saves them as JSON after every row."""

    def __init__(self, section: str, bundle: DataBundle, split: Split, command: str, part: str = "all") -> None:
        self.section, self.bundle, self.split, self.command = section, bundle, split, command
        self.stem = f"llm-{section}" + ("" if part == "all" else f"-{part}")
        self.reports: dict[str, Report] = {}
        self.extra: dict[str, Any] = {}

    def report(self, key: str, protocol: str, note: str) -> Report:
        if key not in self.reports:
            ds = self.bundle.dataset
            self.reports[key] = Report(
                dataset=self.bundle.name, dataset_stats={"users": ds.n_users, "items": ds.n_items,
                                                         "interactions": len(ds)},
                split=self.split.kind, split_stats=self.split.summary(), protocol=protocol, ks=[10], seed=0,
                notes=[note], command=self.command)
        return self.reports[key]

    def add(self, key: str, cases: Cases, note: str, outcome: RankerOutcome, params: dict[str, Any] | None = None,
            fit_seconds: float = 0.0, row_note: str | None = None) -> None:
        row = add_outcome_row(self.report(key, cases.protocol, note), outcome, params or {}, fit_seconds, cases,
                              self.split)
        if row_note:
            row.notes.append(row_note)
        log.info("%s / %s: %s", key, outcome.name, {k: round(v, 4) for k, v in outcome.result.metrics.items()})
        self.save()

    def save(self) -> None:
        RESULTS.mkdir(exist_ok=True)
        payload = {"section": self.section, "command": self.command,
                   "reports": {k: json.loads(r.to_json()) for k, r in self.reports.items()}, **self.extra}
        (RESULTS / f"{self.stem}.json").write_text(json.dumps(payload, indent=2))


def rerank(reranker: Reranker, cases: Cases, bundle: DataBundle, name: str) -> RankerOutcome:
    return evaluate_reranker(reranker, cases, bundle.dataset.item_vocab, user_vocab=bundle.dataset.user_vocab,
                             name=name, progress=progress(name, len(cases)))


CACHED = "latency not meaningful: its model calls repeat an earlier row's and came from the response cache"


def ml1m_sampled(args: argparse.Namespace, command: str, tmp: Path) -> Run:
    bundle = load_dataset("movielens-1m")
    split = make_split(bundle)
    run = Run("ml1m-sampled", bundle, split, command, part=args.part)
    queries = select_users(queries_for_test(split), args.users, args.seed)
    cases = sampled_cases(queries, n=20, seen_sequences=bundle.dataset.sequence, n_items=bundle.dataset.n_items,
                          seed=args.seed)
    small = subset(cases, args.subset, args.seed)
    main_note = (f"{len(cases)} test users drawn with seed {args.seed} from {bundle.dataset.n_users:,}; each "
                 f"target with 19 unseen items drawn uniformly, shown in a seeded random order")
    small_note = f"a seeded subset of {len(small)} of those {len(cases)} users, same candidates and order"
    llm = cached_llm(tmp)
    if args.part in ("scoring", "all"):
        pop, pop_s = fitted("pop", bundle, split)
        sasrec, sasrec_s = fitted("sasrec", bundle, split)
        for key, which, note in (("main", cases, main_note), ("subset", small, small_note)):
            run.add(key, which, note, evaluate_order(which, name="random (shown order)"))
            run.add(key, which, note, evaluate_scorer(pop, which, name="pop"), pop.hyperparameters(), pop_s)
            run.add(key, which, note, evaluate_scorer(sasrec, which, name="sasrec"), sasrec.hyperparameters(),
                    sasrec_s)
        run.add("main", cases, main_note,
                rerank(LikelihoodReranker(llm, bundle.catalog), cases, bundle, "likelihood"), {"calibrate": True})
        run.add("main", cases, main_note,
                rerank(LikelihoodReranker(llm, bundle.catalog, calibrate=False), cases, bundle,
                       "likelihood, uncalibrated"), {"calibrate": False}, row_note=CACHED)
    if args.part in ("generation", "all"):
        verbalizer = VerbalizerReranker(llm, bundle.catalog)
        run.add("main", cases, main_note, rerank(verbalizer, cases, bundle, "verbalizer"))
        run.add("subset", small, small_note, rerank(verbalizer, small, bundle, "verbalizer"), row_note=CACHED)
        run.add("subset", small, small_note,
                rerank(PermutationAggregator(verbalizer, args.permutations, schedule="cyclic"), small, bundle,
                       f"verbalizer, {args.permutations} cyclic permutations"),
                {"permutations": args.permutations, "schedule": "cyclic", "method": "borda"},
                row_note="rotation 0 is the shown order, answered from the response cache (latency understated "
                         f"by about 1/{args.permutations})")
        run.add("subset", small, small_note,
                rerank(ListwiseReranker(llm, bundle.catalog), small, bundle, "listwise"))
    return run


def ml100k_top20(args: argparse.Namespace, command: str, tmp: Path) -> Run:
    bundle = load_dataset("movielens-100k")
    split = make_split(bundle)
    run = Run("ml100k-top20", bundle, split, command)
    sasrec, sasrec_s = fitted("sasrec", bundle, split)
    everyone = queries_for_test(split)
    all_cases = top_n_cases(sasrec, everyone, n=20)
    run.add("all", all_cases, f"all {len(all_cases)} test users", evaluate_order(all_cases, name="sasrec"),
            sasrec.hyperparameters(), sasrec_s)
    cases = top_n_cases(sasrec, select_users(everyone, args.users, args.seed), n=20)
    note = f"{len(cases)} test users drawn with seed {args.seed} from {len(all_cases)}"
    run.add("rerank", cases, note, evaluate_order(cases, name="sasrec"), sasrec.hyperparameters(), sasrec_s)
    llm = cached_llm(tmp)
    run.add("rerank", cases, note, rerank(LikelihoodReranker(llm, bundle.catalog), cases, bundle,
                                          "sasrec + likelihood"))
    run.add("rerank", cases, note, rerank(VerbalizerReranker(llm, bundle.catalog), cases, bundle,
                                          "sasrec + verbalizer"))
    return run


def latency(args: argparse.Namespace, command: str, tmp: Path) -> Run:
    """Per-user latency of each re-ranker on an uncached model, and the prefix-reuse speed-up."""
    bundle = load_dataset("movielens-100k")
    split = make_split(bundle)
    run = Run("latency", bundle, split, command)
    ease, _ = fitted("ease", bundle, split)
    cases = top_n_cases(ease, select_users(queries_for_test(split), args.users, args.seed), n=20)
    llm = create_llm("hf")
    rows = []
    for reranker in (LikelihoodReranker(llm, bundle.catalog), VerbalizerReranker(llm, bundle.catalog),
                     ListwiseReranker(llm, bundle.catalog)):
        outcome = rerank(reranker, cases, bundle, reranker.name)
        d = outcome.diagnostics or {}
        rows.append({"reranker": reranker.name, "users": len(cases), **{k: d[k] for k in (
            "latency_p50_s", "latency_p95_s", "latency_mean_s", "latency_total_s", "processed_tokens_per_second",
            "generated_tokens_per_second", "prompt_tokens", "scored_tokens", "generated_tokens", "llm_calls")}}
                    | {"users_per_minute": 60.0 * len(cases) / d["latency_total_s"]})
    # prefix reuse: the likelihood re-ranker's own prompts, scored both ways in the same process
    builder = LikelihoodReranker(llm, bundle.catalog).builder
    vocab = bundle.dataset.item_vocab
    reuse_s = plain_s = 0.0
    max_diff = 0.0
    for case in cases.cases:
        ids = vocab.lookup_ids(case.candidates)
        prompt = builder.build(vocab.lookup_ids(case.history), candidates=ids)
        text, continuations = prompt.render(llm), list(prompt.continuations)
        started = time.perf_counter()
        with_reuse = llm.logprobs(text, continuations, reuse_prefix=True)
        reuse_s += time.perf_counter() - started
        started = time.perf_counter()
        without = llm.logprobs(text, continuations, reuse_prefix=False)
        plain_s += time.perf_counter() - started
        max_diff = max(max_diff, float(np.max(np.abs(with_reuse - without))))
    run.extra = {"rerankers": rows, "prefix_reuse": {
        "users": len(cases), "candidates": 20, "with_reuse_s": reuse_s, "without_reuse_s": plain_s,
        "speedup": plain_s / reuse_s, "max_abs_logprob_difference": max_diff}}
    run.save()
    return run


def docs(section: str) -> None:
    """Rewrite the docs section of one benchmark from its saved JSON."""
    files = [RESULTS / f"llm-{section}.json"] + [RESULTS / f"llm-{section}-{p}.json" for p in PARTS]
    parts = [json.loads(f.read_text()) for f in files if f.exists()]
    if not parts:
        return
    data = parts[0]
    reports: dict[str, Report] = {}
    for part in parts:  # rows of every part, in part order, under the same report keys
        for key, raw in part["reports"].items():
            rows = [_row(r) for r in raw["rows"]]
            if key in reports:
                reports[key].rows += rows
            else:
                reports[key] = Report(**{**raw, "rows": rows})
                reports[key].command = " and ".join(p["command"] for p in parts)
    commands = " and ".join(f"`{p['command']}`" for p in parts)
    lines = [TITLES[section], "", INTROS[section], "", f"Commands: {commands}", ""]
    for report in reports.values():
        lines.append(report.to_markdown())
    if section == "latency":
        lines += ["| re-ranker | users | p50 s/user | p95 s/user | users/min | tokens/s (all) | LLM calls |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in data["rerankers"]:
            lines.append(f"| {r['reranker']} | {r['users']} | {r['latency_p50_s']:.2f} | {r['latency_p95_s']:.2f} | "
                         f"{r['users_per_minute']:.1f} | {r['processed_tokens_per_second']:.0f} | {r['llm_calls']} |")
        p = data["prefix_reuse"]
        lines += ["", f"Prefix key/value reuse, likelihood scoring of 20 titles for each of {p['users']} users: "
                  f"{p['with_reuse_s']:.1f} s with reuse against {p['without_reuse_s']:.1f} s without, "
                  f"a **{p['speedup']:.1f}x** speed-up; largest difference of a log-probability between the two "
                  f"paths {p['max_abs_logprob_difference']:.1e}.", ""]
    write_section(f"llm-{section}", "\n".join(lines))


def _row(raw: dict[str, Any]) -> Any:
    from recllm.eval.report import ModelRow

    return ModelRow(**raw)


TITLES = {
    "ml1m-sampled": "## LLM re-rankers, MovieLens-1M, `sampled-20` (LLMRank protocol)",
    "ml100k-top20": "## LLM re-rankers, MovieLens-100K, `rerank-top20` over SASRec (LlamaRec protocol)",
    "latency": "## LLM re-rankers: latency, throughput and prefix reuse at 20 candidates",
}
INTROS = {
    "ml1m-sampled": (
        "Leave-one-out split; each test target ranked among itself and 19 items the user never interacted "
        "with, drawn uniformly and shown to every ranker in the same seeded random order. Every row of a table "
        "ranks exactly the same candidates. LLM: SmolLM2-135M-Instruct (the pinned default, float32, `hf` "
        "backend, one CPU thread), zero-shot prompts with the newest 20 history items. Anchors from the LLMRank "
        "paper under this protocol (NDCG@10): ChatGPT 0.488, Vicuna-13B 0.226, SASRec 0.789, popularity 0.523. "
        "The position and popularity tables are the bias measures: NDCG@10 by where the target was shown "
        "(before and after permutation aggregation), and the mean training-popularity percentile of the item "
        "ranked first against that of the targets (with and without calibration)."),
    "ml100k-top20": (
        "Leave-one-out split; SASRec (hyper-parameters in benchmarks/configs/movielens-100k.toml) retrieves its "
        "top 20 unseen items, which a re-ranker re-orders; metrics are over the full catalog (a target outside "
        "the top 20 is a miss), so SASRec's row equals its `full` figure. Anchor: LlamaRec (Llama-2-7B, tuned) "
        "reports NDCG@10 0.0759 against its retriever's 0.0705 under this protocol. Same LLM settings as above."),
    "latency": (
        "MovieLens-100K test users, EASE's top 20 as candidates, the default model on one CPU thread with no "
        "response cache. Latency is the wall time of one `rerank` call (prompt building, model, parsing, "
        "grounding)."),
}


PARTS = ("scoring", "generation")
SECTIONS = {"ml1m-sampled": ml1m_sampled, "ml100k-top20": ml100k_top20, "latency": latency}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=[*SECTIONS, "docs"])
    parser.add_argument("--users", type=int, default=None, help="test users (default per section)")
    parser.add_argument("--subset", type=int, default=100, help="ml1m-sampled: users for listwise and permutations")
    parser.add_argument("--permutations", type=int, default=4)
    parser.add_argument("--part", choices=["all", *PARTS], default="all",
                        help="ml1m-sampled: scoring (classic rows, likelihood) or generation (verbalizer, "
                             "permutations, listwise), to run in two processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only-docs", default="", help="with 'docs': comma-separated sections to rewrite")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.section == "docs":
        for name in (args.only_docs.split(",") if args.only_docs else SECTIONS):
            docs(name)
        return
    args.users = args.users or {"ml1m-sampled": 500, "ml100k-top20": 300, "latency": 10}[args.section]
    torch.set_num_threads(args.threads)
    command = " ".join(["python benchmarks/llm_rerank.py", shlex.join(sys.argv[1:])]).strip()
    with tempfile.TemporaryDirectory() as tmp:
        SECTIONS[args.section](args, command, Path(tmp))
    docs(args.section)


if __name__ == "__main__":
    main()
