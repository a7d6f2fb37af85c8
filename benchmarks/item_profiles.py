"""LLM-written item profiles (issue 13): generate and check one profile per item, and report what the check kept.

    .venv/bin/python benchmarks/item_profiles.py run [--dataset movielens-100k --llm hf]
    .venv/bin/python benchmarks/item_profiles.py docs

The model writes one sentence per item from its catalog facts (``recllm.tasks.profiles``); the check keeps it
only when it names no other catalog title, no year other than the item's, no genre the item does not have and
no person, place or nationality the facts do not contain. Answers go through the persistent response cache,
so the recommenders that read profiles (``profiles="hf"`` in ``sasrec_recipe.py`` and ``cold_start.py``) reuse
them without model time. Writes benchmarks/results/item-profiles-<dataset>.json and its docs section.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import _script
from _docs import machine_text, write_section
from recllm.data import load_dataset
from recllm.eval.report import machine_info
from recllm.llm.cache import CachedLLM
from recllm.pipeline import build_llm
from recllm.tasks.profiles import write_profiles

HERE = Path(__file__).resolve().parent
log = logging.getLogger("item_profiles")
SAMPLES = ("1", "50", "100", "127", "172", "181", "258", "313", "405", "588")
"""Item ids (MovieLens-100K) whose profiles are printed in the docs, kept or not: well-known films a reader can
judge."""


def _path(dataset: str) -> Path:
    return HERE / "results" / f"item-profiles-{dataset}.json"


def run(args: argparse.Namespace, command: str) -> None:
    bundle = load_dataset(args.dataset)
    llm = CachedLLM(build_llm(args.llm))
    items = [i for i in bundle.dataset.item_vocab.ids if i in bundle.catalog]
    started = time.perf_counter()
    report = write_profiles(llm, bundle.catalog, items)
    seconds = time.perf_counter() - started
    samples = [{"item": i, "title": bundle.catalog.title(i), "profile": report.profiles[i].text,
                "kept": report.profiles[i].kept, "violations": list(report.profiles[i].violations)}
               for i in SAMPLES if i in report.profiles]
    payload = {"dataset": args.dataset, "llm": args.llm, "report": report.as_dict(), "seconds": seconds,
               "model_calls": llm.misses, "cache_hits": llm.hits, "samples": samples, "command": command,
               "note": args.note,
               "machine": machine_info(), "threads": args.threads,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    _path(args.dataset).parent.mkdir(exist_ok=True)
    _path(args.dataset).write_text(json.dumps(payload, indent=1))
    log.info("%s", report.as_dict())


def docs() -> None:
    sections = []
    for path in sorted((HERE / "results").glob("item-profiles-*.json")):
        p = json.loads(path.read_text())
        r = p["report"]
        rate = (f"{p['seconds']:.0f} s for {p['model_calls']} model calls" if p["model_calls"] else
                "answers read from the response cache") + (f" ({p['note']})" if p.get("note") else "")
        lines = [f"**{p['dataset']}**, `{p['llm']}`: {r['kept']} of {r['items']} profiles kept "
                 f"({r['kept_share']:.0%}); violations by kind: "
                 + ", ".join(f"{k} {v}" for k, v in r["violations"].items()) + f". {rate}.", "",
                 "| item | profile | kept | violations |", "|---|---|---|---|"]
        for s in p["samples"]:
            lines.append(f"| {s['title']} | {s['profile'].replace('|', '/')} | {'yes' if s['kept'] else 'no'} | "
                         f"{'; '.join(s['violations']).replace('|', '/') or '-'} |")
        lines += ["", f"Command: `{p['command']}`; torch threads {p['threads']}.  ",
                  f"Machine: {machine_text(p['machine'])}; {p['date']}."]
        sections.append("\n".join(lines))
    if not sections:
        return
    body = ("## LLM-written item profiles\n\n"
            "One sentence per item (themes, tone, audience) written by the language model from the item's "
            "catalog facts, kept only when it passes the check against those facts (no other catalog title, no "
            "other year, no genre the item lacks, no person, place or nationality the facts do not state). The "
            "check cannot see claims about the plot: a kept profile can still be wrong about the film (see the "
            "samples). Kept profiles join the item text of the `profiles=\"hf\"` rows in the SASRec and "
            "cold-start tables.\n\n" + "\n\n".join(sections))
    write_section("item-profiles", body)


def main() -> None:
    parser = _script.parser(__doc__)
    parser.add_argument("--dataset", default="movielens-100k")
    parser.add_argument("--llm", default="hf")
    parser.add_argument("--note", default="", help="a remark on the run printed beside its time")
    _script.main("item_profiles.py", parser, run, lambda _: docs())


if __name__ == "__main__":
    main()
