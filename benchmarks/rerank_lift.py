"""Does re-ranking add to the retriever? The verbalizer alone, with permutation aggregation, and blended with the
retriever's scores at a weight chosen on validation users (issue 14, item 2).

    .venv/bin/python benchmarks/rerank_lift.py run [--llm hf:benchmarks/.models/tuned/verbalizer-hard-256
                                                     --users 300 --valid-users 150]
    .venv/bin/python benchmarks/rerank_lift.py docs

MovieLens-100K, leave-one-out, ``rerank-top20`` over SASRec (benchmark settings; fitted on the training part with
early stopping on validation). One scoring pass per list and scorer gives every row, so all rows rank exactly
the same candidates for exactly the same users:

- validation lists (``recllm.train.distill.validation_lists``: training history, SASRec's top 20, the validation
  item as target) for ``--valid-users`` seeded users: the blend weight of each scorer is chosen there, on a grid
  of 0, 0.1, ..., 1 (never on test users);
- test lists for ``--users`` seeded test users (history: train + validation): SASRec alone; the verbalizer; the
  verbalizer over 4 cyclic rotations of the candidates (Borda count; the prefix cache reads each user's history
  once); each blended with SASRec at its validation weight.

A target outside the top 20 is a miss. NDCG@10 and HR@10 with paired bootstrap 95% intervals of the difference
to SASRec. The LLM runs in bfloat16 (``benchmarks/verbalizer_speed.py``). About 4 s a list on 2 cores (the
plain verbalizer, then 4 rotations), so the default sizes take about 30 minutes. Writes
benchmarks/results/rerank-lift.json at the end and its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

import _script
from _docs import machine_text, paired_interval, write_section
from llm_rerank import fitted
from recllm.data import load_dataset
from recllm.data.itemlist import ItemList
from recllm.eval.candidates import select_users, top_n_cases
from recllm.eval.protocols import queries_for_test
from recllm.eval.report import machine_info
from recllm.eval.runner import make_split
from recllm.llm import create_llm
from recllm.ranking import hit_from_ranks, ndcg_from_ranks
from recllm.rerank import PermutationAggregator, VerbalizerReranker
from recllm.rerank.blend import blend_scores, choose_blend_weight
from recllm.train.distill import judge, validation_lists

HERE = Path(__file__).resolve().parent
RESULT = HERE / "results" / "rerank-lift.json"
SCORERS = ("verbalizer", "permutation")


def _ranks(judged: list[Any], scores: list[np.ndarray], weight: float) -> np.ndarray:
    """0-based rank of each list's target after blending (20 when the target is not a candidate)."""
    ranks = []
    for item, values in zip(judged, scores, strict=True):
        order = blend_scores(item.candidates, ItemList(item.candidates.items, values), weight).items
        ranks.append(order.index(item.target) if item.target in order else len(order))
    return np.asarray(ranks)


def run(args: argparse.Namespace, command: str) -> None:
    bundle = load_dataset("movielens-100k")
    split = make_split(bundle)
    sasrec, _ = fitted("sasrec", bundle, split)
    llm = create_llm(args.llm, dtype="bfloat16")
    scorers = {"verbalizer": VerbalizerReranker(llm, bundle.catalog),
               "permutation": PermutationAggregator(VerbalizerReranker(llm, bundle.catalog), n_permutations=4,
                                                    schedule="cyclic")}
    vocab = split.train.item_vocab
    valid = validation_lists(sasrec, split, users=args.valid_users, seed=0)
    cases = top_n_cases(sasrec, select_users(queries_for_test(split), args.users, seed=0), n=20)
    test = []
    for case in cases.cases:
        ids = tuple(vocab.lookup_ids(case.candidates))
        [target] = vocab.lookup_ids(case.targets[:1])
        test.append((split.train.user_vocab.id(int(case.user)), vocab.lookup_ids(case.history),
                     ItemList(ids, np.asarray(case.retriever_scores, dtype=np.float64)), target))
    payload: dict[str, Any] = {"llm": llm.model_name, "llm_spec": args.llm, "valid_users": len(valid),
                               "users": len(test), "command": command, "machine": machine_info()}
    started = time.perf_counter()
    judged = {}
    for part, lists in (("valid", valid), ("test", test)):
        for name, scorer in scorers.items():
            # every list through one scorer, then the next: a user's rotations share their history with each
            # other, but by the time the permutations run the plain prompt has left the 4-entry prefix cache
            judged[part, name] = judge(scorer, lists)
    payload["seconds"] = time.perf_counter() - started
    rows: dict[str, Any] = {}
    test_lists = judged["test", "verbalizer"]
    base = _ranks(test_lists, [j.teacher for j in test_lists], 0.0)
    rows["sasrec"] = {"weight": 0.0, "ranks": base.tolist()}
    for name in SCORERS:
        val = judged["valid", name]
        choice = choose_blend_weight(lambda w, val=val: float(np.mean(ndcg_from_ranks(
            _ranks(val, [j.teacher for j in val], w), 10))))
        mine = judged["test", name]
        scores = [j.teacher for j in mine]
        rows[name] = {"weight": 1.0, "ranks": _ranks(mine, scores, 1.0).tolist()}
        rows[f"{name} blended"] = {"weight": choice.weight, "ranks": _ranks(mine, scores, choice.weight).tolist(),
                                   "validation_ndcg10": {str(k): v for k, v in choice.values.items()}}
    payload.update(rows=rows, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    RESULT.write_text(json.dumps(payload, indent=1))


def docs(_: argparse.Namespace) -> None:
    if not RESULT.exists():
        return
    p = json.loads(RESULT.read_text())
    rows = p["rows"]
    base_ranks = np.asarray(rows["sasrec"]["ranks"])
    base = ndcg_from_ranks(base_ranks, 10)
    lines = ["## Does re-ranking add to the retriever? Blending and permutations, MovieLens-100K `rerank-top20`", "",
             f"SASRec's top 20 for {p['users']} seeded test users (history: train + validation), scored once per "
             f"scorer by the verbalizer on `{p['llm_spec']}` ({p['llm']}, bfloat16); every row ranks the same "
             "candidates for the same users. Permutations: 4 cyclic rotations of the candidates, Borda count. "
             f"Blend weights (the LLM's share; 0 is SASRec's order) chosen on {p['valid_users']} seeded validation "
             "lists (training history, validation item as target), never on test users. A target outside the top "
             "20 is a miss.", "",
             "| ranker | blend weight | NDCG@10 | HR@10 | NDCG@10 minus SASRec (paired 95%) | relative |",
             "|---|---:|---:|---:|---:|---:|"]
    for key, row in rows.items():
        ranks = np.asarray(row["ranks"])
        ndcg, hit = ndcg_from_ranks(ranks, 10), hit_from_ranks(ranks, 10)
        if key == "sasrec":
            diff, rel = "-", "-"
        else:
            low, high = paired_interval(ndcg, base)
            diff = f"{float(np.mean(ndcg - base)):+.4f} [{low:+.4f}, {high:+.4f}]"
            rel = f"{float(np.mean(ndcg) / np.mean(base) - 1):+.1%}"
        lines.append(f"| {key} | {row['weight']:.1f} | {float(np.mean(ndcg)):.4f} | {float(np.mean(hit)):.4f} | "
                     f"{diff} | {rel} |")
    for name in SCORERS:
        val = rows[f"{name} blended"]["validation_ndcg10"]
        lines.append("")
        lines.append(f"Validation NDCG@10 by blend weight, {name}: "
                     + ", ".join(f"{float(k):.1f}: {v:.4f}" for k, v in val.items()) + ".")
    lines += ["", f"Scoring time: {p['seconds'] / 60:.0f} min for {p['valid_users'] + p['users']} lists and both "
              "scorers.", "", f"Command: `{p['command']}`.  ", f"Machine: {machine_text(p['machine'])}; {p['date']}."]
    write_section("rerank-lift", "\n".join(lines))


def main() -> None:
    parser = _script.parser(__doc__)
    parser.add_argument("--llm", default="hf:benchmarks/.models/tuned/verbalizer-hard-256")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--valid-users", type=int, default=150)
    _script.main("rerank_lift.py", parser, run, docs)


if __name__ == "__main__":
    main()
