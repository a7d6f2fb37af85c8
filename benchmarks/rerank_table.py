"""The model x re-ranker table of issue 14, item 6: MovieLens-100K ``rerank-top20`` over SASRec, at least 500 test
users per row, each LLM row also blended with SASRec at a weight chosen on validation users.

    .venv/bin/python benchmarks/rerank_table.py run --row smollm2/verbalizer [--users 500 --valid-users 150]
    .venv/bin/python benchmarks/rerank_table.py run --row all      # every row not finished yet, in order
    .venv/bin/python benchmarks/rerank_table.py docs

Leave-one-out split; SASRec (benchmark settings, fitted on the training part with early stopping on validation)
retrieves its top 20 unseen items. Two sets of lists, the same for every row:

- ``--valid-users`` seeded validation lists (training history, SASRec's top 20 for it, the validation item as
  target): only used to choose each row's blend weight on a grid of 0, 0.1, ..., 1 (never test users);
- ``--users`` seeded test lists (history: train + validation, the test item as target).

Each row is one re-ranker (``recllm.rerank.create_reranker`` with its defaults) on one model, run in bfloat16
on both cores (``benchmarks/verbalizer_speed.py``: tau 0.98 against float32, same top candidate). Every list's
scores, latency and diagnostics are kept, so the docs derive for each row: NDCG@10 and HR@10 alone and
blended, paired bootstrap 95% intervals of the difference to SASRec, latency p50/p95 per user, NDCG@10 by the
target's shown position and the popularity percentile of the item put first.

Resumable: a row's JSON (benchmarks/results/rerank-table/ROW.json) is written every 25 lists and a rerun
continues where it stopped, provided the lists are the same (checked); a finished row is skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import _script
from _docs import machine_text, ndcg_by_position, paired_interval, write_section
from _resume import resume, save
from llm_rerank import fitted
from recllm.data import load_dataset
from recllm.data.itemlist import ItemList
from recllm.eval.audit import group_gaps, popularity_percentiles, user_groups
from recllm.eval.candidates import select_users, top_n_cases
from recllm.eval.fairness import exposure_counts, gini, largest_gap, long_tail_share
from recllm.eval.protocols import queries_for_test
from recllm.eval.report import machine_info
from recllm.eval.runner import make_split
from recllm.llm import create_llm
from recllm.ranking import hit_from_ranks, ndcg_from_ranks
from recllm.rerank import create_reranker
from recllm.rerank.blend import blend_scores, choose_blend_weight
from recllm.train.distill import validation_lists

log = logging.getLogger("rerank_table")
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "rerank-table"
SAVE_EVERY = 25


@dataclass(frozen=True)
class Row:
    """One model and re-ranker: the ``--llm`` spec, the re-ranker's name and options, and what the row shows."""

    llm: str
    reranker: str
    options: dict[str, Any] = field(default_factory=dict)
    note: str = ""


ROWS: dict[str, Row] = {
    "smollm2/verbalizer": Row("hf", "verbalizer", note="the pinned default, SmolLM2-135M-Instruct"),
    "smollm2/verbalizer+evidence": Row("hf", "verbalizer", {"prompt_options": {"evidence": "nearest-history"}},
                                       note="each candidate with the 2 shown history items closest to it by "
                                            "MiniLM embedding of the catalog text (retrieval-augmented prompt)"),
    "smollm2-hard/verbalizer": Row("hf:benchmarks/.models/tuned/verbalizer-hard-256", "verbalizer",
                                   note="the default with the hard-negative LoRA adapter of hard_negatives.py"),
    "gemma3-270m/verbalizer": Row("hf:gemma3-270m", "verbalizer", note="Gemma-3-270M base, Q4_K_M weights"),
    "qwen2.5-0.5b/verbalizer": Row("hf:qwen2.5-coder-0.5b", "verbalizer",
                                   note="Qwen2.5-Coder-0.5B-Instruct"),
    "smollm2/likelihood": Row("hf", "likelihood", note="calibrated (the default)"),
    "gemma3-270m/likelihood": Row("hf:gemma3-270m", "likelihood", note="calibrated (the default)"),
    "qwen2.5-0.5b/likelihood": Row("hf:qwen2.5-coder-0.5b", "likelihood", note="calibrated (the default)"),
}


def _path(name: str) -> Path:
    return RESULTS / (name.replace("/", "--") + ".json")


def _lists(args: argparse.Namespace) -> tuple[Any, Any, dict[str, list[tuple[str, list[str], ItemList, str]]]]:
    """(bundle, split, {"valid": lists, "test": lists}); each list is (user, history, candidates, target)."""
    bundle = load_dataset("movielens-100k")
    split = make_split(bundle)
    sasrec, _ = fitted("sasrec", bundle, split)
    vocab = split.train.item_vocab
    valid = validation_lists(sasrec, split, users=args.valid_users, seed=0)
    test = []
    cases = top_n_cases(sasrec, select_users(queries_for_test(split), args.users, seed=0), n=20)
    for case in cases.cases:
        [target] = vocab.lookup_ids(case.targets[:1])
        test.append((split.train.user_vocab.id(int(case.user)), vocab.lookup_ids(case.history),
                     ItemList(tuple(vocab.lookup_ids(case.candidates)),
                              np.asarray(case.retriever_scores, dtype=np.float64)), target))
    return bundle, split, {"valid": valid, "test": test}


def _key(lists: Sequence[tuple[str, list[str], ItemList, str]]) -> list[str]:
    """What identifies the lists: user, target and candidates of each (a resumed row must see the same)."""
    return [f"{user}|{target}|{','.join(cands.items)}" for user, _, cands, target in lists]


def _run_row(name: str, row: Row, bundle: Any, lists: dict[str, list[Any]], command: str) -> None:
    path = _path(name)
    state = resume(path, {part: _key(items) for part, items in lists.items()},
                   {"row": name, "llm_spec": row.llm, "reranker": row.reranker, "options": row.options,
                    "note": row.note})
    if state is None:
        log.info("%s: finished already", name)
        return
    llm = create_llm(row.llm, dtype="bfloat16")
    reranker = create_reranker(row.reranker, llm, bundle.catalog, **row.options)
    state.update(llm=llm.model_name, command=command, machine=machine_info())
    started = time.perf_counter()
    for part, items in lists.items():
        done = state["lists"][part]
        for index in range(len(done), len(items)):
            user, history, candidates, _ = items[index]
            result = reranker.rerank(history, candidates, user=user)
            by_item = dict(zip(result.items.items, np.asarray(result.items.scores, dtype=np.float64), strict=True))
            diag = result.diagnostics
            done.append({"scores": [float(by_item[c]) for c in candidates.items], "latency_s": diag.latency_s,
                         "prompt_tokens": diag.prompt_tokens, "scored_tokens": diag.scored_tokens,
                         "llm_calls": diag.llm_calls, "history_dropped": diag.history_dropped,
                         "hallucinated": diag.n_hallucinated, "format_errors": diag.format_errors})
            if len(done) % SAVE_EVERY == 0 or len(done) == len(items):
                save(path, state)
                log.info("%s: %s %d/%d (%.0f s this run)", name, part, len(done), len(items),
                         time.perf_counter() - started)
    save(path, state, finished=True)


def run(args: argparse.Namespace, command: str) -> None:
    bundle, _, lists = _lists(args)
    names = list(ROWS) if args.row == "all" else [args.row]
    for name in names:
        _run_row(name, ROWS[name], bundle, lists, command)
        if args.stop_at and time.time() >= args.stop_at:
            log.info("stopping after %s: the time given by --stop-at has passed", name)
            break


# ---- docs -------------------------------------------------------------------------------------------------
def _ranks(lists: Sequence[tuple[str, list[str], ItemList, str]], scores: Sequence[Sequence[float]] | None,
           weight: float) -> np.ndarray:
    """0-based rank of each target after blending the row's scores with SASRec's (20: not a candidate)."""
    out = []
    for index, (_, _, candidates, target) in enumerate(lists):
        mine = candidates if scores is None else ItemList(candidates.items, np.asarray(scores[index]))
        order = blend_scores(candidates, mine, weight).items
        out.append(order.index(target) if target in order else len(order))
    return np.asarray(out)


def _popularity_percentile(split: Any) -> dict[str, float]:
    """Each item's training popularity as a percentile among all items (100: the most interacted-with)."""
    percentiles = popularity_percentiles(np.bincount(split.train.items, minlength=split.train.n_items))
    ids = split.train.item_vocab.lookup_ids(np.arange(split.train.n_items))
    return {str(i): float(p) for i, p in zip(ids, percentiles, strict=True)}


def _by_position(lists: Sequence[Any], ranks: np.ndarray) -> list[str]:
    return ndcg_by_position(np.asarray([c.items.index(t) if t in c.items else -1 for _, _, c, t in lists]), ranks)


def _orders(lists: Sequence[tuple[str, list[str], ItemList, str]], scores: Sequence[Sequence[float]] | None
            ) -> list[tuple[str, ...]]:
    """Each list's candidates in the row's order (SASRec's when ``scores`` is None)."""
    return [blend_scores(c, c if scores is None else ItemList(c.items, np.asarray(scores[i])), 1.0).items
            for i, (_, _, c, _) in enumerate(lists)]


def _fairness_cells(ndcg: np.ndarray, users: Sequence[str], orders: Sequence[Sequence[str]], bundle: Any,
                    split: Any) -> list[str]:
    """The largest NDCG@10 gap between user groups over the attributes (permutation p, Holm-adjusted over them),
    and the exposure Gini and long-tail share of the top-10 lists over the whole catalog."""
    groups = user_groups(bundle.dataset.user_attributes, list(users))
    r = largest_gap(group_gaps({"NDCG@10": ndcg}, groups)["NDCG@10"])
    gap = "-" if r is None else (
        f"{r.attribute}: {r.gap:.3f} [{r.gap_low:.3f}, {r.gap_high:.3f}] {r.best} over {r.worst}, "
        f"p = {r.p_adjusted:.3f}{' **(significant)**' if r.significant else ''}")
    vocab = split.train.item_vocab
    tops = np.asarray([[vocab.index(i) for i in order[:10]] for order in orders], dtype=np.int64)
    counts = np.bincount(split.train.items, minlength=split.train.n_items)
    exposure = exposure_counts(tops, split.train.n_items)
    return [gap, f"{gini(exposure):.3f}", f"{long_tail_share(exposure, counts):.1%}"]


def docs(args: argparse.Namespace) -> None:
    finished = {name: json.loads(_path(name).read_text()) for name in ROWS if _path(name).exists()}
    if not finished:
        return
    bundle, split, lists = _lists(args)
    test, valid = lists["test"], lists["valid"]
    pop = _popularity_percentile(split)
    base = ndcg_from_ranks(_ranks(test, None, 0.0), 10)
    base_hit = hit_from_ranks(_ranks(test, None, 0.0), 10)
    targets_pop = float(np.mean([pop[t] for *_, t in test]))
    lines = ["## Model x re-ranker, MovieLens-100K `rerank-top20` over SASRec (issue 14 table)", "",
             f"SASRec's top 20 for {len(test)} seeded test users (history: train + validation); a target outside "
             "the top 20 is a miss. Each row is one re-ranker with its defaults on one model in bfloat16 (2 CPU "
             f"threads); *blended* mixes the row's standardised scores with SASRec's at the weight (the LLM's "
             f"share) chosen on {len(valid)} seeded validation lists, never on test users. Intervals: paired "
             "bootstrap 95% over users of the difference to SASRec. Rows with fewer users are unfinished "
             "(resumable) and compared on the users they have.", "",
             "| row | users | NDCG@10 | HR@10 | minus SASRec (paired 95%) | relative | blend weight | blended NDCG@10 "
             "| blended minus SASRec | NDCG@10, position prior removed | p50 s/user | p95 s/user | prompt tokens |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines.append(f"| SASRec (retriever) | {len(test)} | {float(base.mean()):.4f} | {float(base_hit.mean()):.4f} | - "
                 "| - | - | - | - | - | - | - | - |")
    positions = ["| SASRec | " + " | ".join(_by_position(test, _ranks(test, None, 0.0))) + " |"]
    first_pop = [f"| SASRec | {float(np.mean([pop[c.items[0]] for _, _, c, _ in test])):.1f} | {targets_pop:.1f} "
                 "| 100% |"]
    users = [user for user, *_ in test]
    fairness = ["| SASRec | " + " | ".join(_fairness_cells(base, users, _orders(test, None), bundle, split)) + " |"]
    notes = []
    for name, state in finished.items():
        done_test = state["lists"]["test"]
        n = len(done_test)
        if n == 0:
            continue
        sub = test[:n]
        scores = [d["scores"] for d in done_test]
        ranks = _ranks(sub, scores, 1.0)
        ndcg, hit = ndcg_from_ranks(ranks, 10), hit_from_ranks(ranks, 10)
        low, high = paired_interval(ndcg, base[:n])
        diff = f"{float(np.mean(ndcg - base[:n])):+.4f} [{low:+.4f}, {high:+.4f}]"
        rel = f"{float(ndcg.mean() / base[:n].mean() - 1):+.1%}"
        blended = "-"
        weight = "-"
        blended_diff = "-"
        unbiased = "-"
        valid_done = state["lists"]["valid"]
        if len(valid_done) == len(valid):
            vscores = [d["scores"] for d in valid_done]
            choice = choose_blend_weight(lambda w, v=vscores: float(np.mean(ndcg_from_ranks(_ranks(valid, v, w),
                                                                                            10))))
            bndcg = ndcg_from_ranks(_ranks(sub, scores, choice.weight), 10)
            blow, bhigh = paired_interval(bndcg, base[:n])
            weight = f"{choice.weight:.1f}"
            blended = f"{float(bndcg.mean()):.4f}"
            blended_diff = f"{float(np.mean(bndcg - base[:n])):+.4f} [{blow:+.4f}, {bhigh:+.4f}]"
            prior = np.mean(vscores, axis=0)  # the mean score at each shown position, over validation lists
            debiased = _ranks(sub, [np.asarray(x) - prior for x in scores], 1.0)
            unbiased = f"{float(ndcg_from_ranks(debiased, 10).mean()):.4f}"
        latency = np.asarray([d["latency_s"] for d in done_test])
        tokens = np.median([d["prompt_tokens"] for d in done_test])
        lines.append(f"| {name} | {n} | {float(ndcg.mean()):.4f} | {float(hit.mean()):.4f} | {diff} | {rel} | "
                     f"{weight} | {blended} | {blended_diff} | {unbiased} | {np.median(latency):.2f} | "
                     f"{np.quantile(latency, 0.95):.2f} | {tokens:.0f} |")
        positions.append(f"| {name} | " + " | ".join(_by_position(sub, ranks)) + " |")
        fairness.append(f"| {name} | " + " | ".join(_fairness_cells(ndcg, users[:n], _orders(sub, scores), bundle,
                                                                     split)) + " |")
        tops = [sorted(zip(c.items, s, strict=True), key=lambda x: -x[1])[0][0]
                for (_, _, c, _), s in zip(sub, scores, strict=True)]
        same_first = np.mean([top == c.items[0] for top, (_, _, c, _) in zip(tops, sub, strict=True)])
        first_pop.append(f"| {name} | {float(np.mean([pop[t] for t in tops])):.1f} | "
                         f"{float(np.mean([pop[t] for *_, t in sub])):.1f} | {same_first:.0%} |")
        hall = sum(d["hallucinated"] for d in done_test)
        fmt = sum(d["format_errors"] for d in done_test)
        dropped = sum(d["history_dropped"] > 0 for d in done_test)
        notes.append(f"- `{name}`: `--llm {state['llm_spec']}` ({state['llm']}), re-ranker `{state['reranker']}`"
                     f"{' ' + json.dumps(state['options']) if state['options'] else ''}; {state['note']}. "
                     f"Diagnostics over its test lists: {hall} hallucinated references, {fmt} format errors, "
                     f"{dropped} lists whose history was shortened (to the newest 20, by design, or to fit the "
                     "context); LLM calls per list "
                     f"{np.mean([d['llm_calls'] for d in done_test]):.1f}. "
                     f"{'Finished ' + state['date'] if state.get('finished') else 'Unfinished'}; machine: "
                     f"{machine_text(state['machine'])}.")
    in_top = np.asarray([t in c.items for _, _, c, t in test])
    random_ndcg = float(in_top.mean() * np.mean([1 / np.log2(r + 2) if r < 10 else 0.0 for r in range(20)]))
    lines += ["", "*Position prior removed*: each row's scores minus the mean score at the same shown position over "
              "the validation lists (for the verbalizer, the model's preference for a label whatever it labels), "
              "so what is left is the model's judgement of the items themselves. A random order of SASRec's top 20 "
              f"scores {random_ndcg:.4f} in expectation on these users (the target is among the 20 for "
              f"{in_top.mean():.0%} of them)."]
    lines += ["", "NDCG@10 by the target's position in SASRec's list (number of test users in brackets; targets "
              "outside the top 20 are in no column):", "", "| row | 1-5 | 6-10 | 11-15 | 16-20 |",
              "|---|---:|---:|---:|---:|", *positions, "",
              "Mean training-popularity percentile (100: most interacted-with item) of the item each row puts "
              "first, against that of the targets, and how often that item is SASRec's first (the candidate "
              "shown first, labelled A):", "", "| row | first item | targets | first is SASRec's first |",
              "|---|---:|---:|---:|",
              *first_pop, "",
              "Fairness and exposure of each row (the audit's measures, `recllm.eval.fairness`, on the same test "
              "users): the largest NDCG@10 gap between groups of one user attribute (gender, age bracket, "
              "occupation; groups of at least 20 users; bootstrap 95% interval; permutation p-value of the "
              "largest gap, Holm-adjusted over the three attributes), and the exposure Gini and long-tail share of "
              "the top-10 lists over the whole catalog (a re-ranker can only re-order SASRec's 20, so these move "
              "little):", "", "| row | largest NDCG@10 gap between groups | exposure Gini | long-tail share |",
              "|---|---|---:|---:|", *fairness, "", "Rows:", "", *notes, "",
              "Commands: `python benchmarks/rerank_table.py run --row ROW --users 500 --valid-users 150` for each "
              "row, then `python benchmarks/rerank_table.py docs --users 500 --valid-users 150`."]
    write_section("rerank-table", "\n".join(lines))


def main() -> None:
    parser = _script.parser(__doc__)
    parser.add_argument("--row", default="all", choices=["all", *ROWS])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--valid-users", type=int, default=150)
    parser.add_argument("--stop-at", type=float, default=0.0,
                        help="Unix time after which no further row is started (a started row runs on)")
    _script.main("rerank_table.py", parser, run, docs)


if __name__ == "__main__":
    main()
