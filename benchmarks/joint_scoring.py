"""Several users' re-rankings in one model pass (issue 16): the likelihood re-ranker's ``rerank_many`` with the
hf backend's joint scoring against one user after another, as a ratio measured in one run, and its agreement.

    .venv/bin/python benchmarks/joint_scoring.py run [--users 48 --group 8]
    .venv/bin/python benchmarks/joint_scoring.py docs

MovieLens-100K test users (seeded), EASE's top 20 (benchmark settings) as candidates, the default model
(SmolLM2-135M-Instruct, float32, 2 threads), the service's re-ranker (calibrated likelihood). Users go in groups
of ``--group``, as the service's queue gathers them; each group is re-ranked both ways, one after the other, in
alternating order (so drift of this VM's speed hits both alike):

- ``one by one``: ``rerank_many`` over a backend without joint scoring: each user's prompt is read alone (with the
  prefix cache, the CPU default) and its 20 titles are scored against its cache;
- ``joint``: every prompt of the group in one right-padded forward pass, then all the group's titles against
  their own prompts' caches, ``score_batch_size`` rows a pass.

The title priors are cached before timing (both ways share them). Agreement: the largest difference of a final
score, and the share of users whose re-ranked order is the same. Writes benchmarks/results/joint-scoring.json and
its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

import _script
from _cases import ease_top20
from _docs import machine_text, write_section
from recllm.data.itemlist import ItemList
from recllm.eval.report import machine_info
from recllm.llm.hf import HFBackend
from recllm.rerank import LikelihoodReranker, RerankRequest, RerankResult

HERE = Path(__file__).resolve().parent
RESULT = HERE / "results" / "joint-scoring.json"


def _timed(llm: HFBackend, reranker: LikelihoodReranker, requests: list[RerankRequest], joint: bool
           ) -> tuple[float, list[RerankResult]]:
    llm.joint_scoring = joint
    llm.prefix_cache.clear()  # no user's prompt is read from an earlier run's cache
    started = time.perf_counter()
    results = reranker.rerank_many(requests)
    return time.perf_counter() - started, results


def run(args: argparse.Namespace, command: str) -> None:
    bundle, split, cases = ease_top20(args.users)
    vocab = split.train.item_vocab
    requests = [RerankRequest(vocab.lookup_ids(c.history),
                              ItemList(tuple(vocab.lookup_ids(c.candidates)),
                                       np.asarray(c.retriever_scores, dtype=np.float64)))
                for c in cases.cases]
    llm = HFBackend()
    reranker = LikelihoodReranker(llm, bundle.catalog)
    _timed(llm, reranker, requests[:2], joint=False)  # warm-up, not counted
    groups = [requests[i:i + args.group] for i in range(0, len(requests) - args.group + 1, args.group)]
    for group in groups:  # every title's prior cached, so both ways time the same work (not counted)
        _timed(llm, reranker, group, joint=True)
    rows: list[dict[str, Any]] = []
    for number, group in enumerate(groups):
        order = (False, True) if number % 2 == 0 else (True, False)
        timed = {joint: _timed(llm, reranker, group, joint) for joint in order}
        (alone_s, alone), (joint_s, together) = timed[False], timed[True]
        difference = max(float(np.abs(np.sort(a.items.scores) - np.sort(b.items.scores)).max())
                         for a, b in zip(alone, together, strict=True))
        same = float(np.mean([a.order == b.order for a, b in zip(alone, together, strict=True)]))
        rows.append({"group": number, "users": len(group), "one_by_one_s": alone_s, "joint_s": joint_s,
                     "speedup": alone_s / joint_s, "max_score_difference": difference, "same_order": same})
        print(json.dumps(rows[-1]), flush=True)
    ratios = np.array([r["speedup"] for r in rows])
    payload = {"rows": rows, "group": args.group, "users": len(groups) * args.group, "llm": llm.model_name,
               "speedup_median": float(np.median(ratios)), "speedup_min": float(ratios.min()),
               "speedup_max": float(ratios.max()),
               "one_by_one_s_per_user": float(sum(r["one_by_one_s"] for r in rows) / (len(rows) * args.group)),
               "joint_s_per_user": float(sum(r["joint_s"] for r in rows) / (len(rows) * args.group)),
               "max_score_difference": max(r["max_score_difference"] for r in rows),
               "same_order": float(np.mean([r["same_order"] for r in rows])), "threads": args.threads,
               "command": command, "machine": machine_info(),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    RESULT.write_text(json.dumps(payload, indent=1))


def docs(_: argparse.Namespace) -> None:
    if not RESULT.exists():
        return
    p = json.loads(RESULT.read_text())
    ratios = np.log([r["speedup"] for r in p["rows"]])
    rng = np.random.default_rng(0)
    means = ratios[rng.integers(0, len(ratios), (4000, len(ratios)))].mean(axis=1)
    low, high = np.exp(np.quantile(means, [0.025, 0.975]))
    gain = float(np.exp(ratios.mean()))
    verdict = ("faster" if low > 1 else "slower" if high < 1 else "not distinguishable from one user after another")
    lines = ["## Several users' re-rankings in one model pass", "",
             f"MovieLens-100K, {p['users']} seeded test users in groups of {p['group']} (as the service's model "
             f"queue gathers concurrent re-ranked requests), EASE's top 20, calibrated likelihood re-ranking with "
             f"the default model ({p['llm']}, float32, {p['threads']} threads). Each group is re-ranked one user "
             "after another (prefix cache on, the CPU default) and jointly (all prompts in one padded pass, then all "
             "titles), in alternating order; title priors cached beforehand.", "",
             "| way | seconds per user (mean) |", "|---|---:|",
             f"| one user after another | {p['one_by_one_s_per_user']:.2f} |",
             f"| joint (one pass per group) | {p['joint_s_per_user']:.2f} |", "",
             f"Speed-up of joint scoring over the {len(ratios)} groups: geometric mean **{gain:.2f}x**, bootstrap 95% "
             f"interval over groups {low:.2f}-{high:.2f}x (groups ranged {p['speedup_min']:.2f}-"
             f"{p['speedup_max']:.2f}x): {verdict} on this CPU. Agreement: the largest difference of a final score "
             f"{p['max_score_difference']:.1e}; the same order for {100 * p['same_order']:.0f}% of users.", "",
             "A gathered group gets all its answers when the joint call ends, while one user after another lets "
             "the first leave early (the mean wait of a group of 8 is about half the group's time). Without a "
             "clear throughput gain that is a loss, so the hf backend scores jointly only on a GPU by default "
             "(`joint_scoring=None`), and the service gathers re-ranked requests (`rerank_batch`, default 8) only "
             "where its re-ranker scores users jointly (a GPU, a model server scored by `echo` or "
             "`prompt_logprobs`, or `llm-serve` over such a model); on this CPU it answers them one at a time. "
             "The GPU rows have not been measured (no GPU was lent to this session).", "",
             f"Command: `{p['command']}`.  ", f"Machine: {machine_text(p['machine'])}; {p['date']}."]
    write_section("joint-scoring", "\n".join(lines))


def main() -> None:
    parser = _script.parser(__doc__)
    parser.add_argument("--users", type=int, default=48)
    parser.add_argument("--group", type=int, default=8)
    _script.main("joint_scoring.py", parser, run, docs)


if __name__ == "__main__":
    main()
