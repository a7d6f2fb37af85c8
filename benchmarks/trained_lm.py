"""Models trained on recommendation data (issue 5) side by side with SASRec on the same leave-one-out split.

    .venv/bin/python benchmarks/trained_lm.py ptum [--dataset movielens-100k]
    .venv/bin/python benchmarks/trained_lm.py tiger [--dataset movielens-100k]
    .venv/bin/python benchmarks/trained_lm.py tallrec [--eval-examples 300]
    .venv/bin/python benchmarks/trained_lm.py verbalizer [--users 100 --train-examples 256]
    .venv/bin/python benchmarks/trained_lm.py docs

- ``ptum``: SASRec with and without PTUM pre-training (masked behaviour + next-k prediction), ``full``
  protocol, both trained in this run.
- ``tiger``: TIGER (RQ-KMeans semantic ids, constrained beam search) against SASRec, ``full`` protocol, both
  trained in this run; semantic-id statistics and invalid generations.
- ``tallrec``: SmolLM2-135M LoRA-tuned on 16 / 64 / 256 TALLRec yes/no examples from the training part; AUC
  of log P(Yes) - log P(No) on held-out test interactions (and the untuned model, 0 examples).
- ``verbalizer``: the verbalizer LoRA-tuned on ``rank`` examples (true next item among 19 sampled negatives,
  20 labels as at inference) against the zero-shot verbalizer, ``rerank-top20`` over SASRec.

Each section writes benchmarks/results/trained-<section>.json and its part of docs/benchmarks.md. Torch runs
on ``--threads`` CPU threads (1 by default, so two sections can run side by side on this 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _docs import write_section
from llm_rerank import RESULTS, cached_llm, fitted, rerank
from recllm.cli import parse_params
from recllm.data import load_dataset
from recllm.data.bundle import DataBundle
from recllm.data.splits import Split
from recllm.eval.candidates import evaluate_order, select_users, top_n_cases
from recllm.eval.protocols import evaluate_full, queries_for_test
from recllm.eval.report import ModelRow, Report, machine_info
from recllm.eval.runner import make_split
from recllm.llm import create_llm
from recllm.llm.cache import CachedLLM, ResponseCache
from recllm.models.base import Recommender
from recllm.models.rating import BiasedBaseline
from recllm.models.registry import create_model
from recllm.pipeline import RetrieverConfig, build_retriever
from recllm.rerank import VerbalizerReranker
from recllm.train.instructions import build_heldout_examples, build_instructions
from recllm.train.lora import train_lora
from recllm.train.tallrec import auc, score_yes_no

HERE = Path(__file__).resolve().parent
TUNED = HERE / ".models" / "tuned"
log = logging.getLogger("trained_lm")


def _save(section: str, payload: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"trained-{section}.json").write_text(json.dumps(payload, indent=2))


def _benchmark_params(bundle: DataBundle, name: str) -> dict[str, Any]:
    config = HERE / "configs" / f"{bundle.name}.toml"
    return parse_params(None, config if config.exists() else None).get(name, {})


def _full_row(label: str, model: Recommender, split: Split, fit_seconds: float) -> ModelRow:
    result = evaluate_full(model, queries_for_test(split), ks=(10,), popularity=split.train.item_popularity)
    row = ModelRow(model=label, params=model.hyperparameters(), metrics=result.metrics, n_users=result.n_users,
                   fit_seconds=fit_seconds, recommend_seconds_per_1k_users=result.seconds_per_1k_users)
    history = getattr(model, "history_", None) or []
    if history:
        best = max(history, key=lambda h: h.get("valid_ndcg") or -1.0)
        row.notes.append(f"trained {len(history)} epochs, best validation NDCG@10 {best.get('valid_ndcg'):.4f} "
                         f"at epoch {best.get('epoch')}")
    log.info("%s: %s in %.0f s", label, {k: round(v, 4) for k, v in result.metrics.items()}, fit_seconds)
    return row


def _fit(name: str, params: dict[str, Any], split: Split) -> tuple[Recommender, float]:
    model = create_model(name, params)
    started = time.perf_counter()
    model.fit(split.train, valid=split.valid)
    return model, time.perf_counter() - started


def _report(bundle: DataBundle, split: Split, protocol: str, command: str, note: str) -> Report:
    ds = bundle.dataset
    return Report(dataset=bundle.name, dataset_stats={"users": ds.n_users, "items": ds.n_items,
                                                      "interactions": len(ds)},
                  split=split.kind, split_stats=split.summary(), protocol=protocol, ks=[10], seed=0, notes=[note],
                  command=command)


def ptum(args: argparse.Namespace, command: str) -> dict[str, Any]:
    bundle = load_dataset(args.dataset)
    split = make_split(bundle)
    base = _benchmark_params(bundle, "sasrec")
    seeds = [int(x) for x in args.seeds.split(",")]
    report = _report(bundle, split, "full", command, "SASRec trained in this run with the benchmark "
                     "hyper-parameters, once plainly and once after PTUM pre-training of its encoder, for each "
                     f"seed ({', '.join(map(str, seeds))}: initialisation, batches, masks)")
    payload: dict[str, Any] = {"section": "ptum", "command": command, "report": None, "seeds": seeds}
    done = _earlier_rows(RESULTS / f"trained-ptum-{bundle.name}.json", split)
    for seed in seeds:
        for label, extra in ((PLAIN, {}), (PTUM, {"pretrain": "both"})):
            if f"{label}, seed {seed}" in done:
                log.info("%s, seed %d: kept from the earlier run on the same split", label, seed)
                report.rows.append(done[f"{label}, seed {seed}"])
                continue
            model, seconds = _fit("sasrec", {**base, **extra, "seed": seed}, split)
            row = _full_row(f"{label}, seed {seed}", model, split, seconds)
            pre = getattr(model, "pretrain_history_", None) or []
            if pre:
                losses = [f"{task} loss {pre[0][f'{task}_loss']:.3f} -> {pre[-1][f'{task}_loss']:.3f}"
                          for task in ("mbp", "nbp") if f"{task}_loss" in pre[0]]
                row.notes.append(f"PTUM: {len(pre)} pre-training epochs, " + ", ".join(losses))
            report.rows.append(row)
            payload["report"] = json.loads(report.to_json())
            _save(f"ptum-{bundle.name}", payload)
    return payload


PLAIN, PTUM = "sasrec", "sasrec + PTUM (mbp + nbp)"


def _earlier_rows(path: Path, split: Split) -> dict[str, ModelRow]:
    """Rows of an interrupted earlier run on the same split, by label, so that a rerun fits only what is missing
    (each fit is deterministic for its seed on one thread, so a kept row is what a refit would give)."""
    if not path.exists():
        return {}
    raw = json.loads(path.read_text()).get("report")
    if not raw or raw.get("split_stats") != split.summary():
        return {}
    return {row.model: row for row in _loaded(raw).rows}


def _seed_means(report: Report) -> list[str]:
    """Mean and spread over seeds of each variant, and the ratio of the means."""
    lines = ["| variant | seeds | HR@10 mean | NDCG@10 mean (min .. max) | fit s mean |", "|---|---:|---:|---|---:|"]
    means: dict[str, float] = {}
    for label in (PLAIN, PTUM):
        rows = [r for r in report.rows if r.model.startswith(label + ", seed")]
        if not rows:
            continue
        ndcg = np.array([r.metrics["NDCG@10"] for r in rows])
        means[label] = float(ndcg.mean())
        lines.append(f"| {label} | {len(rows)} | {np.mean([r.metrics['HR@10'] for r in rows]):.4f} | "
                     f"{ndcg.mean():.4f} ({ndcg.min():.4f} .. {ndcg.max():.4f}) | "
                     f"{np.mean([r.fit_seconds for r in rows]):.0f} |")
    if len(means) == 2 and means[PLAIN]:
        lines += ["", f"NDCG@10 ratio of the means, PTUM / plain: **{means[PTUM] / means[PLAIN]:.2f}**."]
        by_label = {r.model: r.metrics["NDCG@10"] for r in report.rows}
        paired = [by_label[f"{PTUM}, seed {s}"] - by_label[f"{PLAIN}, seed {s}"] for s in _seeds(report)
                  if f"{PTUM}, seed {s}" in by_label and f"{PLAIN}, seed {s}" in by_label]
        plain = [v for k, v in by_label.items() if k.startswith(PLAIN + ", seed")]
        if len(paired) == 1:
            lines.append("One seed per variant: SASRec's seed-to-seed spread on this data set was not measured (on "
                         "MovieLens-100K it exceeded the PTUM effect, see its three-seed section), so this one "
                         "difference is not evidence of an effect.")
        if len(paired) > 1 and len(plain) > 1:
            mean, error = float(np.mean(paired)), float(np.std(paired, ddof=1) / np.sqrt(len(paired)))
            lines.append(f"PTUM minus plain NDCG@10, seed by seed: {', '.join(f'{d:+.4f}' for d in paired)}; mean "
                         f"{mean:+.4f} with a standard error of {error:.4f} over {len(paired)} seeds. Plain SASRec "
                         f"alone varies by {np.std(plain, ddof=1):.4f} (standard deviation) from seed to seed.")
    return lines


def _seeds(report: Report) -> list[int]:
    return sorted({int(r.model.rsplit("seed ", 1)[1]) for r in report.rows if ", seed " in r.model})


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUC from ``positives`` and ``negatives`` examples."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) \
        / (positives * negatives)
    return float(np.sqrt(max(variance, 0.0)))


def tiger(args: argparse.Namespace, command: str) -> dict[str, Any]:
    from recllm.models.tiger import TIGER

    bundle = load_dataset(args.dataset)
    split = make_split(bundle)
    report = _report(bundle, split, "full", command, "SASRec and TIGER trained in this run on the same train "
                     "part, validation items for early stopping, every item ranked for each test user")
    payload: dict[str, Any] = {"section": "tiger", "command": command}
    sasrec, seconds = _fit("sasrec", _benchmark_params(bundle, "sasrec"), split)
    report.rows.append(_full_row("sasrec", sasrec, split, seconds))
    payload["report"] = json.loads(report.to_json())
    _save(f"tiger-{bundle.name}", payload)
    params = {**_benchmark_params(bundle, "tiger"), **TIGER_PARAMS}
    model = build_retriever(RetrieverConfig(model="tiger", params=params), bundle)
    assert isinstance(model, TIGER)
    started = time.perf_counter()
    model.fit(split.train, valid=split.valid)
    row = _full_row("tiger (rq-kmeans ids, beam 30)", model, split, time.perf_counter() - started)
    row.notes.append(f"invalid generations: {model.invalid_generations_}")
    report.rows.append(row)
    assert model.semantic_ids_ is not None
    payload.update(report=json.loads(report.to_json()), semantic_ids=model.semantic_ids_.stats(),
                   invalid_generations=model.invalid_generations_)
    _save(f"tiger-{bundle.name}", payload)
    return payload


TIGER_PARAMS = {"hidden": 128, "ff_dim": 256, "n_layers": 2, "max_items": 10, "max_targets_per_user": 10,
                "epochs": 24, "patience": 2, "eval_every": 2, "beam_size": 30, "lr": 1e-3}
"""Sized for a CPU session: the paper's model is larger (4+4 layers, hidden 128, ff 1024, 200k steps on a GPU)."""
TALLREC_EPOCHS = {16: 8, 64: 2, 256: 1}
"""Epochs per training size: 16 optimizer steps for 16 and 64 examples, 32 for 256 (CPU time)."""


def _dates(earlier: dict[str, Any] | None) -> str:
    """The day(s) the rows were measured: the earlier run's and today's (UTC)."""
    today = time.strftime("%Y-%m-%d", time.gmtime())
    before = (earlier or {}).get("date")
    return today if not before or before.endswith(today) else f"{before.split(' to ')[0]} to {today}"


def tallrec(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Zero-shot and LoRA-tuned AUC for each size in ``--sizes`` (0: the untuned model); rows of other sizes
    measured earlier on the same evaluation examples are kept, so sizes may be run in separate processes."""
    bundle = load_dataset("movielens-100k")
    split = make_split(bundle)
    options = {"tasks": ("yesno",), "max_history": 10}
    heldout = build_heldout_examples(split, bundle.catalog, max_examples_per_task=args.eval_examples, seed=1,
                                     **options)
    evaluation = {"examples": len(heldout), "positives": sum(int(e.label or 0) for e in heldout)}
    path = RESULTS / "trained-tallrec.json"
    earlier = json.loads(path.read_text()) if path.exists() else None
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    model = args.model
    keep = [] if earlier is None or earlier["eval"] != evaluation else \
        [r for r in earlier["rows"] if r["train_examples"] not in sizes or r.get("model", DEFAULT_MODEL) != model]
    commands = sorted({*(earlier.get("commands") or [earlier["command"]]), command}) \
        if earlier is not None and keep else [command]
    bias = BiasedBaseline().fit(split.train)
    labels = [int(e.label or 0) for e in heldout]
    baseline = {"model": "bias: mu + b_u + b_i fitted on the training ratings, predicted rating as the score",
                "auc": auc(labels, bias.predict([e.user for e in heldout], [e.item or "" for e in heldout]))}
    payload: dict[str, Any] = {"section": "tallrec", "command": " and ".join(commands), "commands": commands,
                               "machine": machine_info(), "eval": evaluation, "baseline": baseline, "rows": keep,
                               "date": _dates(earlier if keep else None)}
    rows = payload["rows"]
    for size in sizes:
        started = time.perf_counter()
        if size == 0:
            scores = score_yes_no(create_llm(_spec(model)), list(heldout))
            rows.append({"model": model, "train_examples": 0, **scores.as_dict(), "seconds": 0.0, "steps": 0,
                         "score_seconds": time.perf_counter() - started})
        else:
            epochs = TALLREC_EPOCHS.get(size, 1)
            train = build_instructions(split, bundle.catalog, max_examples_per_task=size, seed=0, **options)
            out = TUNED / (f"tallrec-{size}" if model == DEFAULT_MODEL else f"tallrec-{model}-{size}")
            result = train_lora(train, out, model=None if model == DEFAULT_MODEL else model, overwrite=True,
                                progress=False, epochs=epochs, batch_size=8, eval_fraction=0.0, lr=3e-4,
                                num_threads=args.threads)
            started = time.perf_counter()
            scores = score_yes_no(create_llm(f"hf:{out}"), list(heldout))
            rows.append({"model": model, "train_examples": len(train), **scores.as_dict(), "seconds": result.seconds,
                         "steps": result.steps, "epochs": epochs, "loss_first": result.losses[0],
                         "loss_last": result.losses[-1], "score_seconds": time.perf_counter() - started})
        log.info("%d examples: %s", size, rows[-1])
        rows.sort(key=lambda r: (MODEL_ORDER.get(r.get("model", DEFAULT_MODEL), 9), r["train_examples"]))
        _save("tallrec", payload)
    _save("tallrec", payload)  # also with no sizes: the classic baseline alone
    return payload


def verbalizer(args: argparse.Namespace, command: str, tmp: Path) -> dict[str, Any]:
    bundle = load_dataset("movielens-100k")
    split = make_split(bundle)
    sasrec, _ = fitted("sasrec", bundle, split)
    cases = top_n_cases(sasrec, select_users(queries_for_test(split), args.users, args.seed), n=20)
    report = _report(bundle, split, "rerank-top20", command,
                     f"{len(cases)} test users drawn with seed {args.seed}; SASRec's top 20 re-ranked")
    payload: dict[str, Any] = {"section": "verbalizer", "command": command}
    report.rows.append(_outcome_row(report, evaluate_order(cases, name="sasrec"), sasrec.hyperparameters()))
    zero = VerbalizerReranker(cached_llm(tmp), bundle.catalog)
    report.rows.append(_outcome_row(report, rerank(zero, cases, bundle, "sasrec + verbalizer (zero-shot)"), {}))
    payload["report"] = json.loads(report.to_json())
    _save("verbalizer", payload)
    train = build_instructions(split, bundle.catalog, tasks=("rank",), n_candidates=20,
                               max_examples_per_task=args.train_examples, seed=0)
    out = TUNED / f"verbalizer-{args.train_examples}"
    result = train_lora(train, out, overwrite=True, progress=False, epochs=1, batch_size=8, lr=3e-4,
                        num_threads=args.threads)
    tuned_llm = CachedLLM(create_llm(f"hf:{out}"), ResponseCache(tmp / "tuned.sqlite"))
    tuned = VerbalizerReranker(tuned_llm, bundle.catalog)
    row = _outcome_row(report, rerank(tuned, cases, bundle, f"sasrec + verbalizer (LoRA, {len(train)} examples)"),
                       {"lora_steps": result.steps})
    losses = result.losses
    row.notes.append(f"LoRA r=8 on {result.n_train} rank examples (20 candidates, random negatives), "
                     f"{result.steps} steps in {result.seconds:.0f} s; train loss {losses[0]:.3f} -> {losses[-1]:.3f}; "
                     f"held-out loss " + " -> ".join(f"{e.loss:.3f}" for e in result.evals))
    report.rows.append(row)
    payload.update(report=json.loads(report.to_json()), lora=result.to_dict() | {"history": None})
    _save("verbalizer", payload)
    return payload


def _outcome_row(report: Report, outcome: Any, params: dict[str, Any]) -> ModelRow:
    row = ModelRow(model=outcome.name, params=params, metrics=outcome.result.metrics, n_users=outcome.result.n_users,
                   fit_seconds=0.0, recommend_seconds_per_1k_users=outcome.result.seconds_per_1k_users)
    row.diagnostics = outcome.diagnostics
    log.info("%s: %s", outcome.name, {k: round(v, 4) for k, v in outcome.result.metrics.items()})
    return row


# ---- docs ---------------------------------------------------------------------------------------------
def _loaded(raw: dict[str, Any]) -> Report:
    return Report(**{**raw, "rows": [ModelRow(**r) for r in raw["rows"]]})


def _ratio_line(report: Report, base: str, other: str) -> str:
    rows = {r.model: r for r in report.rows}
    if base not in rows or other not in rows:
        return ""
    a, b = rows[base].metrics["NDCG@10"], rows[other].metrics["NDCG@10"]
    return f"NDCG@10 ratio {other} / {base}: **{b / a:.2f}** ({b:.4f} / {a:.4f})." if a else ""


def docs() -> None:
    for path in sorted(RESULTS.glob("trained-ptum-*.json")):
        data = json.loads(path.read_text())
        report = _loaded(data["report"])
        write_section(f"trained-ptum-{report.dataset}", "\n".join([
            f"## SASRec with and without PTUM pre-training, {report.dataset}, `full` protocol", "",
            PTUM_INTRO, "", f"Command: `{data['command']}`", "", *_seed_means(report), "", report.to_markdown()]))
    for path in sorted(RESULTS.glob("trained-tiger-*.json")):
        data = json.loads(path.read_text())
        report = _loaded(data["report"])
        lines = [f"## TIGER (generative retrieval over semantic ids) against SASRec, {report.dataset}, `full` "
                 "protocol", "", TIGER_INTRO, "", f"Command: `{data['command']}`", "", report.to_markdown()]
        if "semantic_ids" in data:
            stats = data["semantic_ids"]
            lines += ["", "Semantic ids (RQ-KMeans over MiniLM item-text embeddings, 3 levels x 256 codes + a "
                      "collision level): codes used per level "
                      + ", ".join(f"{lv['used']} ({lv['usage']:.0%}, perplexity {lv['perplexity']:.0f})"
                                  for lv in stats["levels"])
                      + f"; collision rate {stats['collision_rate']:.1%} (deepest {stats['max_collision_depth']}). "
                      f"Invalid generations during evaluation: **{data['invalid_generations']}**.",
                      "", _ratio_line(report, "sasrec", report.rows[-1].model)
                      + " The paper's anchor on Amazon Beauty: TIGER 0.0384 / SASRec 0.0318 = 1.21."]
        write_section(f"trained-tiger-{report.dataset}", "\n".join(lines))
    path = RESULTS / "trained-tallrec.json"
    if path.exists():
        data = json.loads(path.read_text())
        ev = data["eval"]
        lines = ["## TALLRec-style yes/no AUC, MovieLens-100K", "", TALLREC_INTRO.format(**ev), "",
                 "Commands: " + " and ".join(f"`{c}`" for c in data.get("commands", [data["command"]]))
                 + f". Machine: {_machine(data['machine'], TALLREC_THREADS)}; "
                 f"{data.get('date', 'date not recorded')}.", "",
                 "| model | training examples | epochs | steps | train loss first -> last | AUC | 95% interval "
                 "| accuracy | mass on Yes/No | train s | score s |",
                 "|---|---:|---:|---:|---|---:|---|---:|---:|---:|---:|"]
        for r in data["rows"]:
            loss = f"{r['loss_first']:.3f} -> {r['loss_last']:.3f}" if "loss_first" in r else "-"
            half = 1.96 * auc_standard_error(r["auc"], r["positives"], r["n"] - r["positives"])
            scored = f"{r['score_seconds']:.0f}" if "score_seconds" in r else "-"
            lines.append(f"| {r.get('model', DEFAULT_MODEL)} | {r['train_examples']} | {r.get('epochs', 0)} | "
                         f"{r['steps']} | {loss} | {r['auc']:.3f} | {r['auc'] - half:.2f} .. {r['auc'] + half:.2f} | "
                         f"{r['accuracy']:.3f} | {r['answer_mass']:.2f} | {r['seconds']:.0f} | {scored} |")
        if "baseline" in data:
            base = data["baseline"]
            half = 1.96 * auc_standard_error(base["auc"], ev["positives"], ev["examples"] - ev["positives"])
            lines += ["", f"Classic baseline on the same evaluation examples ({base['model']}): AUC "
                      f"**{base['auc']:.3f}** ({base['auc'] - half:.2f} .. {base['auc'] + half:.2f})."]
        best = max(data["rows"], key=lambda r: r["auc"])
        lines += ["", f"Best language-model row: {best.get('model', DEFAULT_MODEL)} with {best['train_examples']} "
                  f"training examples, AUC {best['auc']:.3f}"
                  + (f", against the classic baseline's {data['baseline']['auc']:.3f}" if "baseline" in data else "")
                  + ". A mass on Yes/No near 0 means the model rarely answers with either word, so its score "
                  "compares two unlikely next words (Gemma-3-270M is a base model, not tuned to follow a chat "
                  "prompt)."]
        lines += ["", "95% interval: AUC +- 1.96 standard errors (Hanley & McNeil) over these evaluation examples; "
                  "an interval that holds 0.5 is not distinguishable from chance. TALLRec (LLaMA-7B, LoRA) reports "
                  "AUC 0.67 / 0.67 / 0.72 at 16 / 64 / 256 examples on MovieLens-100K."]
        write_section("trained-tallrec", "\n".join(lines))
    path = RESULTS / "trained-verbalizer.json"
    if path.exists():
        data = json.loads(path.read_text())
        report = _loaded(data["report"])
        write_section("trained-verbalizer", "\n".join([
            "## Tuned against zero-shot verbalizer, MovieLens-100K, `rerank-top20` over SASRec", "",
            VERBALIZER_INTRO, "", f"Command: `{data['command']}`", "", report.to_markdown()]))


def _machine(info: dict[str, Any], threads: str = "one thread") -> str:
    return (f"{info.get('cores')} cores, {info.get('memory_gib')} GiB, GPU {info.get('gpu', 'none')}, torch "
            f"{info.get('torch', '?')} on {threads}")


PTUM_INTRO = (
    "Leave-one-out split, every item ranked (history excluded). PTUM (Wu et al., 2020) pre-trains the SASRec "
    "encoder for 10 epochs on two self-supervised tasks over the training sequences, masked behaviour prediction "
    "(20% of positions masked, predicted from both sides) and next-k behaviour prediction (the next 3 items from "
    "a prefix), then trains next-item prediction as usual with validation early stopping. The fit time includes "
    "the pre-training. CPU, torch on one thread, beside other jobs on the 2 cores (another one-thread benchmark, at "
    "times the test suite), so fit times are inflated.")
TIGER_INTRO = (
    "Leave-one-out split, every item ranked (history excluded). TIGER generates the next item's semantic id code "
    "by code (encoder-decoder transformer trained from scratch; beam search over a prefix trie of valid ids, beam "
    "30); items outside the beam all tie at the bottom and count as misses under the pessimistic-ties rule, so "
    "HR@10 is bounded by how often the target is in the beam. Hyper-parameters, sized for a CPU session: hidden 128, "
    "2+2 layers, feed-forward 256, the last 10 items, the newest 10 targets per user, up to 24 epochs, validation "
    "NDCG@10 every 2 epochs with patience 2 (the paper: 4+4 layers, feed-forward 1024, 200k steps on a GPU). CPU, "
    "torch on one thread, beside another one-thread benchmark and at times the test suite on the 2 cores (fit times "
    "of both rows inflated alike); SASRec with the benchmark's tuned hyper-parameters. TIGER's recommendation time "
    "is the beam search (4 decoding steps of 30 beams per user).")
DEFAULT_MODEL = "smollm2"
TALLREC_THREADS = "each command's `--threads` (1 unless given)"
MODEL_ORDER = {"smollm2": 0, "gemma3-270m": 1, "qwen2.5-0.5b": 2}
"""The TALLRec section's models by name, in table order (rows measured before models were named are smollm2's)."""


def _spec(model: str) -> str:
    return "hf" if model == DEFAULT_MODEL else f"hf:{model}"


TALLREC_INTRO = (
    "Leave-one-out split. Training examples: seeded samples of (last 10 training items with their ratings, a "
    "later training item) -> \"Yes\" if rated 4 or 5, else \"No\", from training interactions only. Evaluation: "
    "{examples} test interactions (one per sampled test user, {positives} liked), the history being everything "
    "before it. Score log P(Yes) - log P(No) of the next token; AUC is the Mann-Whitney statistic. Models: "
    "the pinned default SmolLM2-135M-Instruct (smollm2), Gemma-3-270M (the pre-trained base model) and "
    "Qwen2.5-Coder-0.5B-Instruct, each loaded by name (`--model`), the prompt in the model's chat template "
    "(ChatML for Gemma-3-270M, whose file carries none); LoRA r=8 on q/v projections, lr 3e-4, batch 8, CPU "
    "float32; 0 examples is the untuned model. Score s: seconds to score the evaluation examples (on the "
    "command's `--threads`, 1 unless given).")
VERBALIZER_INTRO = (
    "SASRec (benchmark hyper-parameters) retrieves its top 20 unseen items; the verbalizer shows them as "
    "labelled candidates A..T and reads the label the model writes. Zero-shot: the pinned SmolLM2-135M-Instruct. "
    "Tuned: the same model with a LoRA adapter trained on `rank` examples from the training part (the true next "
    "item among 19 random unseen items, shuffled): the LlamaRec recipe, but on a 135M model, with about a hundred "
    "examples and 15 optimizer steps (what a CPU session allows), and with random negatives where LlamaRec trains "
    "on its retriever's own top 20, the harder negatives it meets at inference. Metrics over the full catalog (a "
    "target outside the top 20 is a miss). With 100 users the HR@10 rests on about 15 hits, so differences of a "
    "few thousandths in NDCG@10 are sampling noise. Anchor: LlamaRec (Llama-2-7B, tuned) NDCG@10 0.0759 against "
    "its retriever's 0.0705.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=["ptum", "tiger", "tallrec", "verbalizer", "docs"])
    parser.add_argument("--dataset", default="movielens-100k", help="ptum and tiger")
    parser.add_argument("--seeds", default="0,1,2", help="ptum: comma-separated model seeds")
    parser.add_argument("--users", type=int, default=100, help="verbalizer: test users")
    parser.add_argument("--train-examples", type=int, default=256, help="verbalizer: LoRA training examples")
    parser.add_argument("--eval-examples", type=int, default=300, help="tallrec: held-out examples")
    parser.add_argument("--sizes", default="0,16,64,256", help="tallrec: training sizes (0: untuned)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="tallrec: the model by name (smollm2, gemma3-270m, "
                        "qwen2.5-0.5b)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.section != "docs":
        torch.set_num_threads(args.threads)
        command = "python benchmarks/trained_lm.py " + shlex.join(sys.argv[1:])
        with tempfile.TemporaryDirectory() as tmp:
            if args.section == "ptum":
                ptum(args, command)
            elif args.section == "tiger":
                tiger(args, command)
            elif args.section == "tallrec":
                tallrec(args, command)
            else:
                verbalizer(args, command, Path(tmp))
    docs()


if __name__ == "__main__":
    main()
