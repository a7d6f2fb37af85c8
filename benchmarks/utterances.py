"""Reading people (issue 15): field-level precision and recall of the chat's preference reader on the labelled
utterance sets in tests/data, for the rules alone, the language model alone and both.

    .venv/bin/python benchmarks/utterances.py run --readers rules
    .venv/bin/python benchmarks/utterances.py run --readers model,both --llm hf [--limit 120] [--sets fresh]
    .venv/bin/python benchmarks/utterances.py docs

Sets: ``utterances.jsonl`` (351 messages, written first; the rules were developed against it),
``utterances_heldout.jsonl`` (195, written independently once the rules were done; its first reading is kept
below, the rules were then corrected on its misses) and ``utterances_fresh.jsonl`` (written last, never used
to change the rules). Every message is read with a fresh state holding only the list shown before it. The
model reads under the extraction schema (constrained JSON, greedy); ``model`` is its checked answer alone
(titles must resolve in the catalog and be named in the message, genres must be catalog genres), ``both``
the rules with the model filling the fields the rules left empty. ``--limit`` reads the first N messages of
each set with the model (seeded order), so slower models fit in a session; the row says how many.

Writes benchmarks/results/utterances.json (rows keyed by set, reader and model; a rerun replaces its rows) and
its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import _script
from _docs import machine_text, write_section
from recllm.chat import LLMExtractor, RuleExtractor
from recllm.chat.scoring import classes, load_utterances, score
from recllm.data import load_dataset
from recllm.eval.report import machine_info
from recllm.llm import create_llm

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data"
RESULT = HERE / "results" / "utterances.json"
SETS = {"development": "utterances.jsonl", "held-out": "utterances_heldout.jsonl", "fresh": "utterances_fresh.jsonl"}
FIRST_READ = {"titles": (0.967, 0.944, 0.955), "genres": (1.0, 1.0, 1.0), "years": (0.974, 0.974, 0.974),
              "unknown_titles": (0.810, 0.810, 0.810), "exact": 0.938}
"""The rules' first reading of the held-out set (precision, recall, F1), before its misses were looked at."""


def run(args: argparse.Namespace, command: str) -> None:
    bundle = load_dataset("movielens-100k")
    dataset = bundle.dataset
    popularity = {i: float(dataset.item_popularity[n]) for n, i in enumerate(dataset.item_vocab.ids)}
    rules = RuleExtractor(bundle.catalog, popularity)
    # one generation per message serves both model readers: the second reads the first's answers from a cache
    # that lives only for this run (so the timing of the model row is the model's, and "both" reports it too)
    scratch = tempfile.TemporaryDirectory()
    llm = create_llm(args.llm, cache=Path(scratch.name) / "llm.sqlite") if {"model", "both"} & set(args.readers) \
        else None
    model_seconds: dict[str, float] = {}
    extractor = LLMExtractor(llm, bundle.catalog, rules=rules) if llm is not None else None
    rows = json.loads(RESULT.read_text())["rows"] if RESULT.exists() else []
    for name, file in SETS.items():
        if not (DATA / file).exists() or (args.sets and name not in args.sets):
            continue
        utterances = load_utterances(DATA / file, bundle.catalog)
        for reader in args.readers:
            subset = utterances
            if reader != "rules" and args.limit and args.limit < len(utterances):
                order = np.random.default_rng(0).permutation(len(utterances))[:args.limit]
                subset = [utterances[i] for i in sorted(order)]
            if reader == "rules":
                read, model = rules.extract, "none"
            elif extractor is not None:
                read = extractor.extract if reader == "both" else (lambda text, _s: extractor.read_model(text))
                model = args.llm
            else:
                raise SystemExit(f"reader {reader!r} needs --llm")
            started = time.perf_counter()
            report = score(read, subset)
            seconds = (time.perf_counter() - started) / len(subset)
            if reader == "model":
                model_seconds[name] = seconds
            elif reader == "both" and name in model_seconds:
                seconds += model_seconds[name]  # its generations were the model row's, read from the cache
            report.pop("misses")
            rows = [r for r in rows if (r["set"], r["reader"], r["model"]) != (name, reader, model)]
            rows.append({"set": name, "reader": reader, "model": model, "messages": len(subset),
                         "of": len(utterances), "classes": dict(classes(subset)), "seconds_per_message": seconds,
                         **report, "llm": llm.model_name if llm is not None and reader != "rules" else None,
                         "unusable": extractor.n_unusable if extractor is not None and reader != "rules" else None,
                         "command": command, "machine": machine_info(), "threads": args.threads,
                         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
            if extractor is not None:
                extractor.n_unusable = 0
            RESULT.write_text(json.dumps({"rows": rows}, indent=1))
            g = report["groups"]
            print(f"{name} {reader} {model}: titles {g['titles']['f1']} genres {g['genres']['f1']} "
                  f"years {g['years']['f1']} ({seconds * 1000:.1f} ms / message)")


def _cell(figures: dict[str, Any]) -> str:
    f1 = figures.get("f1")
    if f1 is None:
        return "–"
    return f"{f1:.3f} ({figures['precision']:.2f} / {figures['recall']:.2f})"


def docs(_: argparse.Namespace) -> None:
    if not RESULT.exists():
        return
    rows = json.loads(RESULT.read_text())["rows"]
    order = {name: n for n, name in enumerate(SETS)}
    rows.sort(key=lambda r: (order.get(r["set"], 9), r["model"] != "none", r["model"], r["reader"]))
    lines = ["## Reading people: the chat's preference reader", "",
             "Field-level F1 (precision / recall) on the labelled MovieLens-100K utterance sets in `tests/data/` "
             "(`benchmarks/utterances.py`): every value a reader produces is a true or false positive, every "
             "expected value it misses a false negative. *titles* pools liked and disliked items (a title read "
             "with the wrong polarity counts against both), *genres* wanted and avoided genres, *years* the two "
             "bounds; *unknown* are titles named that the catalog lacks; *exact* the share of messages with every "
             "field right. `rules` is the rule reader, `model` the model's constrained JSON alone (checked against "
             "the catalog), `both` the rules with the model filling only the fields the rules left empty.", "",
             "| set | reader | model | messages | titles | genres | years | unknown | exact | ms / message |",
             "|---|---|---|---:|---|---|---|---|---:|---:|"]
    for r in rows:
        g = r["groups"]
        shown = f"{r['messages']}" + (f" of {r['of']}" if r["messages"] != r["of"] else "")
        lines.append(f"| {r['set']} | {r['reader']} | {r['model']} | {shown} | {_cell(g['titles'])} | "
                     f"{_cell(g['genres'])} | {_cell(g['years'])} | {_cell(g['unknown_titles'])} | "
                     f"{r['exact']:.3f} | {r['seconds_per_message'] * 1000:.1f} |")
    fr = FIRST_READ
    lines += ["", "The development set was written first and the rules were built against it, so its figures are "
              "optimistic. The held-out set was written independently after the rules were done; **its first "
              f"reading by the rules** (before any of its misses were looked at) gave titles F1 {fr['titles'][2]:.3f} "
              f"(P {fr['titles'][0]:.3f} / R {fr['titles'][1]:.3f}), genres {fr['genres'][2]:.3f}, years "
              f"{fr['years'][2]:.3f}, unknown titles {fr['unknown_titles'][2]:.3f}, exact {fr['exact']:.3f}. Its 12 "
              "misses (lists of titles that continue a verdict across commas, a title with a typo split at "
              "\"and\", a negated year range, \"from the 50s or 60s\", trailing words such as \"btw\" and "
              "\"either\") were then fixed as classes, so the held-out row above is no longer unseen. The fresh "
              "set was written last and never used to change the rules: it is the honest figure.", ""]
    latest = rows[-1]
    commands = sorted({r["command"] for r in rows})
    lines += ["Commands: " + "; ".join(f"`{c}`" for c in commands) + ".  ",
              f"Machine: {machine_text(latest['machine'])}; {latest['date']}."]
    write_section("utterances", "\n".join(lines))


def main() -> None:
    parser = _script.parser(__doc__)
    parser.add_argument("--readers", type=lambda s: s.split(","), default=["rules"])
    parser.add_argument("--llm", default="hf")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--sets", type=lambda s: s.split(","), default=[], help="development, held-out, fresh "
                        "(default: all)")
    _script.main("utterances.py", parser, run, docs)


if __name__ == "__main__":
    main()
