"""Explanations that are true (issue 15): how often the model's explanation passes the check and is shown,
why the others fail, and examples of both.

    .venv/bin/python benchmarks/explanations.py run --llm hf [--users 300]
    .venv/bin/python benchmarks/explanations.py docs

For ``--users`` seeded MovieLens-100K test users, the retriever (EASE, benchmark settings, fitted on the
training part) recommends its top unseen item; the model explains it from the user's training history with the
``explain`` prompt (greedy, 96 new tokens, at most three sentences), and ``recllm.tasks.explain`` checks the
text: titles within the history and the item, years with their own titles, genres (named or described) true
of the cited items, no unsupported numbers, the item named and a reason tied to the user. A text that fails is
replaced by the grounded template, which is what a person then sees. Rows are keyed by model; a rerun
replaces its row. Writes benchmarks/results/explanations.json and its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import _script
from _docs import machine_text, write_section
from recllm.cli import parse_params
from recllm.data import load_dataset
from recllm.eval.candidates import select_users, top_n_cases
from recllm.eval.protocols import queries_for_test
from recllm.eval.report import machine_info
from recllm.eval.runner import make_split
from recllm.llm import create_llm
from recllm.pipeline import RetrieverConfig, build_retriever
from recllm.tasks import Explainer
from recllm.tasks.explain import violation_kind

HERE = Path(__file__).resolve().parent
RESULT = HERE / "results" / "explanations.json"
BATCH = 8


def run(args: argparse.Namespace, command: str) -> None:
    bundle = load_dataset("movielens-100k")
    split = make_split(bundle)
    params = parse_params(None, HERE / "configs" / "movielens-100k.toml").get("ease", {})
    retriever = build_retriever(RetrieverConfig(model="ease", params=params), bundle).fit(split.train)
    queries = select_users(queries_for_test(split), args.users, seed=0)
    cases = top_n_cases(retriever, queries, n=1).cases
    vocab = split.train.item_vocab
    pairs = [(vocab.lookup_ids(case.history), vocab.id(int(case.candidates[0]))) for case in cases]
    llm = create_llm(args.llm)
    explainer = Explainer(llm, bundle.catalog)
    started = time.perf_counter()
    explanations = []
    for start in range(0, len(pairs), BATCH):
        explanations += explainer.explain_many(pairs[start:start + BATCH])
    seconds = (time.perf_counter() - started) / len(pairs)
    classes = [sorted({violation_kind(v) for v in e.violations}) for e in explanations]
    kinds = Counter(kind for found in classes for kind in found)  # explanations with at least one of a kind
    failing = Counter(frozenset(violation_kind(v) for v in e.violations) for e in explanations if not e.grounded)
    shown = [e for e in explanations if e.grounded]
    rejected = [e for e in explanations if not e.grounded]
    examples = [{"item": bundle.catalog[e.item].label(), "generated": e.generated.strip(), "shown": e.text,
                 "checked": e.grounded, "violations": list(e.violations)}
                for e in [*shown[:10], *rejected[:20 - min(10, len(shown))]]]
    rows = json.loads(RESULT.read_text())["rows"] if RESULT.exists() else []
    rows = [r for r in rows if r["llm_spec"] != args.llm]
    rows.append({"llm_spec": args.llm, "llm": llm.model_name, "explanations": len(explanations),
                 "model_text_shown": len(shown) / len(explanations), "violation_kinds": dict(kinds),
                 "only_reason": failing.get(frozenset({"no reason tied to the user"}), 0),
                 "seconds_per_explanation": seconds, "examples": examples, "violation_classes": classes,
                 "command": command,
                 "machine": machine_info(), "threads": args.threads,
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    RESULT.write_text(json.dumps({"rows": rows}, indent=1))


def docs(_: argparse.Namespace) -> None:
    if not RESULT.exists():
        return
    rows = json.loads(RESULT.read_text())["rows"]
    lines = ["## Explanations: what the model writes and what is shown", "",
             "MovieLens-100K, seeded test users, the EASE retriever's top unseen item explained from the user's "
             "training history (`benchmarks/explanations.py`). The model's text is shown as checked only when it "
             "names the item, gives a reason tied to the user (a history title or a genre the item shares with "
             "the history), cites only the history and the item (with their right years), says no genre or year "
             "the cited items lack (everyday genre words included) and states no unsupported number; otherwise the "
             "grounded template is shown. Violation kinds count explanations with at least one of that kind.", "",
             "| model | explanations | model text shown | s / explanation | failed only for want of a reason | "
             "violation kinds |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(r["violation_kinds"].items(), key=lambda kv: -kv[1]))
        lines.append(f"| {r['llm']} | {r['explanations']} | {r['model_text_shown']:.3f} | "
                     f"{r['seconds_per_explanation']:.2f} | {r['only_reason']} | {kinds} |")
    for r in rows:
        lines += ["", f"Examples ({r['llm']}; the first (up to ten) shown model texts, then rejected ones up to "
                  "twenty in all, with what was shown instead):", "",
                  "| item | model text | shown | checked | violations |", "|---|---|---|---|---|"]
        for e in r["examples"]:
            def cell(text: str) -> str:
                return " ".join(text.split()).replace("|", "/")[:220]
            lines.append(f"| {cell(e['item'])} | {cell(e['generated'])} | "
                         f"{cell(e['shown']) if not e['checked'] else '(the model text)'} | "
                         f"{'yes' if e['checked'] else 'no'} | {cell('; '.join(e['violations']))} |")
    default = next((r for r in rows if r["llm_spec"] == "hf"), None)
    if default is not None:
        lines += ["", "The default model rarely gives a checkable reason, and what it says beyond the catalog is often "
                  "false (an earlier run: a Venice premiere for The Godfather, The Terminator \"a sequel to "
                  "Titanic\"). Since the checker also rejects claims the catalog cannot check (who made a film, what "
                  "it is based on or a sequel to, awards, \"the user's favorite\"), its text is shown for "
                  f"{default['model_text_shown']:.3f} of explanations (0.073 before that rule, on the same users); "
                  "the texts still shown name genres the item has in the catalog and share with the history. "
                  "Nearly everyone sees the grounded template, which is true by construction."]
    qwen = next((r for r in rows if "qwen" in r["llm_spec"]), None)
    if qwen is not None:
        lines += ["", "Qwen2.5-0.5B writes longer texts that more often pass. Read by hand, half of its first ten "
                  "shown texts (before the last checker rules) held a false or unverifiable claim the checker let "
                  "through: a span of time in words (\"a hit for over two decades\"), a series, where the story "
                  "is set (\"set in the 20th century\", of Star Wars), a made-up title in a list of history titles "
                  "(\"The Anticrus Line\"), a claim about the user's viewing order. The checker now rejects the "
                  "first four classes; claims about how the user watches are not checked. The Qwen row is "
                  f"measured with those rules: its text is shown for {qwen['model_text_shown']:.3f}. Read by hand, "
                  "every one of its shown texts above gives titles, years and genres that are true of the catalog; "
                  "what remains unchecked is of another kind (\"fits the user's history of watching the oldest "
                  "movies first\", \"a classic American drama\")."]
    latest = rows[-1]
    lines += ["", "Commands: " + "; ".join(f"`{r['command']}`" for r in rows) + ".  ",
              f"Machine: {machine_text(latest['machine'])}; {latest['date']}."]
    write_section("explanations", "\n".join(lines))


def main() -> None:
    parser = _script.parser(__doc__)
    parser.add_argument("--llm", default="hf")
    parser.add_argument("--users", type=int, default=300)
    _script.main("explanations.py", parser, run, docs)


if __name__ == "__main__":
    main()
