"""Peak memory and step time of LoRA tuning with and without gradient checkpointing, on the verbalizer's own
training examples (MovieLens-100K ``rank`` prompts with 20 labelled candidates, 700-900 tokens each).

    .venv/bin/python benchmarks/lora_memory.py [--steps 3 --batch-size 8 --threads 1]
    .venv/bin/python benchmarks/lora_memory.py --docs      # rewrite the docs section from the saved JSON

Each setting runs in a fresh process, so its peak resident memory (``ru_maxrss``) is its own; both settings
train on the same examples with the same seed. Writes benchmarks/results/lora-memory.json and the
``lora-memory`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _docs import write_section

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS = {"plain": False, "checkpointed": True}


def measure(checkpointing: bool, steps: int, batch_size: int, threads: int) -> dict[str, Any]:
    """One LoRA run of ``steps`` optimizer steps; returns its step times, losses and peak RSS (in this process)."""
    from recllm.data import load_dataset
    from recllm.eval.runner import make_split
    from recllm.train.instructions import build_instructions
    from recllm.train.lora import train_lora

    bundle = load_dataset("movielens-100k")
    split = make_split(bundle)
    examples = build_instructions(split, bundle.catalog, tasks=("rank",), n_candidates=20,
                                  max_examples_per_task=steps * batch_size, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = train_lora(examples, Path(tmp) / "run", overwrite=True, progress=False, max_steps=steps,
                            batch_size=batch_size, eval_fraction=0.0, lr=3e-4, num_threads=threads,
                            gradient_checkpointing=checkpointing)
        seconds = time.perf_counter() - started
    step_seconds = [r.seconds for r in result.history]
    return {"gradient_checkpointing": checkpointing, "steps": result.steps, "batch_size": batch_size,
            "losses": result.losses, "step_seconds": step_seconds,
            "input_tokens_per_step": [r.input_tokens for r in result.history],
            "seconds": seconds, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def docs(data: dict[str, Any]) -> None:
    rows = data["rows"]
    lines = ["## LoRA memory with and without gradient checkpointing", "",
             "SmolLM2-135M-Instruct, LoRA r=8 on q/v projections, CPU float32, torch on "
             f"{data['threads']} thread(s); {data['steps']} optimizer steps of {data['batch_size']} MovieLens-100K "
             "`rank` prompts (20 labelled candidates, the verbalizer's training data), the same examples and seed "
             "in both runs, each in its own process. Peak memory is the process's maximum resident set size "
             "(model, data set and tokenizer included). Step times are from a shared machine (another one-thread "
             "benchmark ran beside both runs alike): read the ratio.", "",
             f"Command: `{data['command']}`", "",
             "| gradient checkpointing | peak RSS GiB | mean step s | input tokens per step | losses |",
             "|---|---:|---:|---:|---|"]
    for r in rows:
        mean_step = sum(r["step_seconds"]) / len(r["step_seconds"])
        tokens = sum(r["input_tokens_per_step"]) / len(r["input_tokens_per_step"])
        lines.append(f"| {'on' if r['gradient_checkpointing'] else 'off'} | {r['peak_rss_gib']:.1f} | "
                     f"{mean_step:.1f} | {tokens:,.0f} | {', '.join(f'{x:.4f}' for x in r['losses'])} |")
    by = {r["gradient_checkpointing"]: r for r in rows}
    if len(by) == 2:
        plain, checkpointed = by[False], by[True]
        step = (sum(checkpointed["step_seconds"]) / len(checkpointed["step_seconds"])) / \
            (sum(plain["step_seconds"]) / len(plain["step_seconds"]))
        lines += ["", f"Checkpointing: peak memory x{checkpointed['peak_rss_gib'] / plain['peak_rss_gib']:.2f}, "
                  f"step time x{step:.2f}; the losses agree (the result does not change, only where activations "
                  "live). Turn it on with `recllm train lm ... --option lora.gradient_checkpointing=true`."]
    machine = data["machine"]
    lines += ["", f"Machine: {machine['cores']} cores, {machine['memory_gib']} GiB, GPU: {machine['gpu']}; "
              f"torch {machine.get('torch', '?')}; {data['date']}."]
    write_section("lora-memory", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--one", choices=sorted(SETTINGS), help=argparse.SUPPRESS)
    parser.add_argument("--docs", action="store_true", help="only rewrite the docs section from the saved JSON")
    args = parser.parse_args()
    if args.docs:
        docs(json.loads((RESULTS / "lora-memory.json").read_text()))
        return
    if args.one:
        print(json.dumps(measure(SETTINGS[args.one], args.steps, args.batch_size, args.threads)))
        return
    import torch  # noqa: F401  (for machine_info's torch version)

    from recllm.eval.report import machine_info

    rows = []
    for name in SETTINGS:
        command = [sys.executable, __file__, "--one", name, "--steps", str(args.steps), "--batch-size",
                   str(args.batch_size), "--threads", str(args.threads)]
        done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(name, {k: rows[-1][k] for k in ("peak_rss_gib", "seconds", "losses")}, flush=True)
    command = f"python benchmarks/lora_memory.py {shlex.join(sys.argv[1:])}".strip()
    data = {"section": "lora-memory", "command": command,
            "steps": args.steps, "batch_size": args.batch_size, "threads": args.threads, "rows": rows,
            "machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lora-memory.json").write_text(json.dumps(data, indent=2))
    docs(data)


if __name__ == "__main__":
    main()
