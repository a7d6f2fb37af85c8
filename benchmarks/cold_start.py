"""New items (issue 13): recommending items that no training interaction mentions, from their text.

    .venv/bin/python benchmarks/cold_start.py run --dataset movielens-100k --seeds 0,1,2
    .venv/bin/python benchmarks/cold_start.py docs

Protocol (`cold-items`): a seeded 10% of the items are held out entirely (recllm's `cold-items` split; half
of them validation, half test). For every user with test interactions, the candidates are all test cold items,
the targets the user's own test cold items, and the history the user's training interactions; NDCG@10 and
HR@10 (any target in the top 10) per user, averaged over users. Classic models cannot score these items (no
interaction, no embedding), so the baselines are a random order and a genre-match heuristic (the item's
genres weighted by their share in the user's history). Rows are appended to
benchmarks/results/cold-start-<dataset>.json per seed and scorer, so a run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

import _script
from _docs import machine_text, write_section
from recllm.cli import parse_params
from recllm.data import load_dataset
from recllm.data.bundle import DataBundle
from recllm.data.splits import Split, cold_start_items
from recllm.eval.candidates import Case, Cases, evaluate_order, evaluate_scorer
from recllm.eval.report import machine_info
from recllm.pipeline import RetrieverConfig, build_retriever

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
log = logging.getLogger("cold_start")

SCORERS: dict[str, dict[str, Any]] = {
    "random": {},
    "genre-match": {},
    "text-st": {"model": "text", "params": {"embedder": "st"}},
    "text-lm": {"model": "text", "params": {"embedder": "lm"}},
    "text-st-profiles": {"model": "text", "params": {"embedder": "st", "profiles": "hf"}},
    "text-lm-profiles": {"model": "text", "params": {"embedder": "lm", "profiles": "hf"}},
    "sasrec-text-concat-st": {"model": "sasrec", "params": {"text": "concat", "embedder": "st"}},
    "sasrec-text-add-st": {"model": "sasrec", "params": {"text": "add", "embedder": "st"}},
    "sasrec-text-concat-lm": {"model": "sasrec", "params": {"text": "concat", "embedder": "lm"}},
}


class GenreMatch:
    """Scores an item by the share of the user's history that has each of its genres (summed)."""

    name = "genre-match"

    def __init__(self, bundle: DataBundle) -> None:
        vocab = bundle.dataset.item_vocab
        genres = sorted({g for item in bundle.catalog for g in item.genres})
        where = {g: k for k, g in enumerate(genres)}
        self.matrix = np.zeros((len(vocab), len(genres)), dtype=np.float32)
        for index, item in enumerate(vocab.ids):
            if item in bundle.catalog:
                for genre in bundle.catalog[item].genres:
                    self.matrix[index, where[genre]] = 1.0

    def score(self, users: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        profiles = np.stack([self.matrix[h].mean(axis=0) if len(h) else np.zeros(self.matrix.shape[1])
                             for h in histories]).astype(np.float32)
        return profiles @ self.matrix.T


def cold_cases(split: Split, seed: int) -> Cases:
    """One case per user with test interactions: all test cold items in a seeded random order."""
    test_items = np.unique(split.test.items)
    rng = np.random.default_rng(seed)
    cases = []
    for user in range(split.test.n_users):
        targets = np.unique(split.test.sequence(user))
        if not len(targets):
            continue
        cases.append(Case(user, np.asarray(split.train.sequence(user)), rng.permutation(test_items), targets))
    return Cases("cold-items", tuple(cases), split.train.n_items)


def _path(dataset: str) -> Path:
    return RESULTS / f"cold-start-{dataset}.json"


def run(args: argparse.Namespace, command: str) -> None:
    bundle = load_dataset(args.dataset)
    path = _path(args.dataset)
    payload = json.loads(path.read_text()) if path.exists() else {"dataset": args.dataset, "runs": []}
    done = {(r["scorer"], r["seed"]) for r in payload["runs"]}
    config = HERE / "configs" / f"{args.dataset}.toml"
    recipe = parse_params(None, config if config.exists() else None).get("sasrec", {})
    for seed in (int(s) for s in args.seeds.split(",")):
        split = cold_start_items(bundle.dataset, fraction=0.1, seed=seed)
        cases = cold_cases(split, seed)
        for name in args.scorers.split(","):
            if (name, seed) in done:
                continue
            spec = SCORERS[name]
            started = time.perf_counter()
            if name == "random":
                outcome = evaluate_order(cases, ks=(10,), name=name)
            elif name == "genre-match":
                outcome = evaluate_scorer(GenreMatch(bundle), cases, ks=(10,), name=name)  # type: ignore[arg-type]
            else:
                params = dict(spec["params"])
                if spec["model"] == "sasrec":  # the recipe's settings, a fixed number of epochs (no cold validation)
                    params = {**recipe, "epochs": args.epochs, **params, "seed": seed, "num_threads": args.threads}
                model = build_retriever(RetrieverConfig(model=spec["model"], params=params), bundle)
                model.fit(split.train)
                outcome = evaluate_scorer(model, cases, ks=(10,), name=name)
            seconds = time.perf_counter() - started
            row = {"scorer": name, "seed": seed, "metrics": outcome.result.metrics, "users": len(cases),
                   "cold_test_items": len(np.unique(split.test.items)), "seconds": seconds,
                   "command": command, "machine": machine_info(), "threads": args.threads,
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
            payload["runs"].append(row)
            RESULTS.mkdir(exist_ok=True)
            path.write_text(json.dumps(payload, indent=1))
            log.info("%s seed %d: NDCG@10 %.4f HR@10 %.4f (%d users, %.0f s)", name, seed,
                     row["metrics"]["NDCG@10"], row["metrics"]["HR@10"], len(cases), seconds)


def docs(_: argparse.Namespace) -> None:
    sections = []
    for dataset in ("movielens-100k", "movielens-1m"):
        if not _path(dataset).exists():
            continue
        runs = json.loads(_path(dataset).read_text())["runs"]
        by: dict[str, dict[int, dict[str, Any]]] = {}
        for r in runs:
            by.setdefault(r["scorer"], {})[r["seed"]] = r
        genre = by.get("genre-match", {})
        lines = [f"**{dataset}**: {runs[0]['cold_test_items']} test cold items, {runs[0]['users']} users "
                 "(seed 0).", "", "| scorer | seeds | NDCG@10 | HR@10 | x genre-match (NDCG@10, same seeds) | s |",
                 "|---|---|---:|---:|---:|---:|"]
        def mean_ndcg(item: tuple[str, dict[int, dict[str, Any]]]) -> float:
            return float(np.mean([r["metrics"]["NDCG@10"] for r in item[1].values()]))

        for name, rows in sorted(by.items(), key=lambda kv: -mean_ndcg(kv)):
            seeds = sorted(rows)
            ndcg = np.mean([rows[s]["metrics"]["NDCG@10"] for s in seeds])
            both = [s for s in seeds if s in genre]
            ratio = (np.mean([rows[s]["metrics"]["NDCG@10"] for s in both])
                     / np.mean([genre[s]["metrics"]["NDCG@10"] for s in both])) if both else float("nan")
            lines.append(f"| {name} | {','.join(map(str, seeds))} | {ndcg:.4f} | "
                         f"{np.mean([rows[s]['metrics']['HR@10'] for s in seeds]):.4f} | {ratio:.2f} | "
                         f"{np.mean([rows[s]['seconds'] for s in seeds]):.0f} |")
        lines += ["", f"Command: `{runs[0]['command']}`; torch threads {runs[0]['threads']}.  ",
                  f"Machine: {machine_text(runs[0]['machine'])}; last run {runs[-1]['date']}."]
        sections.append("\n".join(lines))
    body = ("## New items from text (cold start), `cold-items` protocol\n\n"
            "A seeded 10% of the items never appear in training; each user with test interactions ranks all test "
            "cold items, targets are that user's own (NDCG@10 and HR@10 per user, averaged; one split per seed). "
            "`text-*` score items by the cosine of their text vector to the mean of the user's history vectors "
            "(`st`: MiniLM, `lm`: mean hidden states of the default LLM); `sasrec-text-*` is SASRec with the "
            "semantic view of the text, trained on the warm items only; `-profiles` rows add the default LLM's "
            "checked item profiles to the text (see the item-profiles section).\n\n" + "\n\n".join(sections))
    write_section("cold-start", body)


def main() -> None:
    parser = _script.parser(__doc__)
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--scorers", default=",".join(SCORERS))
    parser.add_argument("--epochs", type=int, default=20)
    _script.main("cold_start.py", parser, run, docs)


if __name__ == "__main__":
    main()
