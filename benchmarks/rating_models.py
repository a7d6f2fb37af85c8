"""Rating prediction with each language model beside the classic baselines (issue 14, item 6): RMSE and MAE of the
LLM's expected rating on held-out MovieLens-100K ratings, raw and mapped onto ratings on validation users.

    .venv/bin/python benchmarks/rating_models.py run --model smollm2 [--test-examples 300 --valid-examples 150]
        [--cues "Rating:" "Rating: "]
    .venv/bin/python benchmarks/rating_models.py docs

Leave-one-out split. Examples are held-out ``rate`` examples (``recllm.train.build_heldout_examples``): one
seeded test (or validation) interaction per sampled user, its rating the answer, the newest 10 items before it
with their ratings as the history, in the ``rating`` prompt with the cue "Rating:" (the prompt the ``rate``
LoRA task trains on and ``RatingPredictor`` builds). The model's prediction is its expected rating, the sum of
v * p(v) over the digits 1..5 renormalised (``RatingPredictor.expected``), after each cue of ``--cues`` (the
default "Rating:" and "Rating: ", whose digits are read after the space token). Rows, all on the same test
examples:

- global mean and bias (mu + b_u + b_i), fitted on the training ratings; *bias, linear*: a + b * bias with a and
  b fitted by least squares on the validation examples (the fair reference for the fitted LLM rows);
- per model: the raw expected rating; *linear*: a + b * expected, fitted on the validation examples; *bias +
  LLM*: a + b * bias + c * expected, fitted on the validation examples (never on test examples).

Intervals: paired bootstrap 95% over test examples of the row's RMSE minus the bias baseline's. Resumable per
model (benchmarks/results/rating-models/MODEL.json, written every 25 examples).
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
from _resume import resume, save
from recllm.data import load_dataset
from recllm.eval.report import machine_info
from recllm.eval.runner import make_split
from recllm.llm import create_llm
from recllm.models.rating import BiasedBaseline, GlobalMean
from recllm.tasks import RatingPredictor
from recllm.train import build_heldout_examples

log = logging.getLogger("rating_models")
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "rating-models"
CHUNK = 25
CUES = ("Rating:", "Rating: ")
"""The predictor's default cue, and the same with the space a tokenizer that splits digits puts before one."""
MODELS = {"smollm2": "hf", "gemma3-270m": "hf:gemma3-270m", "qwen2.5-0.5b": "hf:qwen2.5-coder-0.5b"}
NAMES = {"smollm2": "SmolLM2-135M-Instruct (the pinned default)", "gemma3-270m": "Gemma-3-270M base",
         "qwen2.5-0.5b": "Qwen2.5-Coder-0.5B-Instruct"}


def _examples(args: argparse.Namespace) -> tuple[Any, Any, dict[str, list[Any]]]:
    """(bundle, split, {"valid": examples, "test": examples})."""
    bundle = load_dataset("movielens-100k")
    split = make_split(bundle)
    options = {"tasks": ("rate",), "max_history": 10}
    parts = {"valid": list(build_heldout_examples(split, bundle.catalog, part="valid", seed=2,
                                                  max_examples_per_task=args.valid_examples, **options)),
             "test": list(build_heldout_examples(split, bundle.catalog, part="test", seed=1,
                                                 max_examples_per_task=args.test_examples, **options))}
    return bundle, split, parts


def _path(model: str) -> Path:
    return RESULTS / f"{model}.json"


def run(args: argparse.Namespace, command: str) -> None:
    bundle, _, parts = _examples(args)
    path = _path(args.model)
    keys = {f"{cue}|{part}": [f"{e.user}|{e.item}|{e.target}" for e in items]
            for cue in args.cues for part, items in parts.items()}
    state = resume(path, keys, {"model": args.model, "spec": MODELS[args.model], "cues": list(args.cues)})
    if state is None:
        log.info("%s: finished already", args.model)
        return
    llm = create_llm(MODELS[args.model], dtype=args.dtype)
    predictor = RatingPredictor(llm, bundle.catalog)  # expected() reads texts already cued below
    state.update(llm=llm.model_name, dtype=args.dtype, command=command, machine=machine_info())
    for key in keys:
        cue, part = key.rsplit("|", 1)
        items, done = parts[part], state["lists"][key]
        while len(done) < len(items):
            chunk = items[len(done):len(done) + CHUNK]
            started = time.perf_counter()
            batch = predictor.expected([e.prompt.render(llm) + cue for e in chunk])
            seconds = (time.perf_counter() - started) / len(chunk)
            assert batch.digit_mass is not None
            done.extend({"expected": float(x), "mass": float(m), "seconds": seconds}
                        for x, m in zip(batch.predictions, batch.digit_mass, strict=True))
            save(path, state)
            log.info("%s: cue %r, %s %d/%d (%.2f s/example)", args.model, cue, part, len(done), len(items), seconds)
            if args.stop_at and time.time() >= args.stop_at:
                log.info("stopped: the time given by --stop-at has passed (rerun to continue)")
                return
    save(path, state, finished=True)


# ---- docs -------------------------------------------------------------------------------------------------
def _fit(columns: list[np.ndarray], target: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of ``target`` on an intercept and ``columns``."""
    design = np.column_stack([np.ones(len(target)), *columns])
    return np.linalg.lstsq(design, target, rcond=None)[0]


def _apply(coef: np.ndarray, columns: list[np.ndarray]) -> np.ndarray:
    return np.clip(coef[0] + sum(c * x for c, x in zip(coef[1:], columns, strict=True)), 1.0, 5.0)


def _cells(predicted: np.ndarray, actual: np.ndarray, base: np.ndarray, rounds: int = 2000) -> str:
    """RMSE | MAE | RMSE minus the baseline's, with its paired bootstrap 95% interval over examples."""
    mine, theirs = (predicted - actual) ** 2, (base - actual) ** 2
    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(actual), (rounds, len(actual)))
    diffs = np.sqrt(mine[draws].mean(axis=1)) - np.sqrt(theirs[draws].mean(axis=1))
    low, high = np.quantile(diffs, [0.025, 0.975])
    diff = float(np.sqrt(mine.mean()) - np.sqrt(theirs.mean()))
    return (f"{float(np.sqrt(mine.mean())):.4f} | {float(np.abs(predicted - actual).mean()):.4f} | "
            f"{diff:+.4f} [{low:+.4f}, {high:+.4f}]")


def _model_rows(name: str, done: dict[str, list[dict[str, float]]], parts: dict[str, list[Any]],
                actual: dict[str, np.ndarray], by_bias: dict[str, np.ndarray]) -> list[str]:
    """The table rows of one model and cue: raw expected rating, and the maps fitted on validation examples."""
    n = len(done["test"])
    if n == 0:
        return []
    test, base = actual["test"][:n], by_bias["test"][:n]
    x = np.asarray([d["expected"] for d in done["test"]])
    mass = float(np.mean([d["mass"] for d in done["test"]]))
    speed = float(np.median([d["seconds"] for d in done["test"]]))
    r = float(np.corrcoef(x, test)[0, 1]) if np.std(x) > 0 else float("nan")
    tail = f"{r:.3f} | {mass:.3f} | {speed:.2f}"
    rows = [f"| {name}, expected rating | {n} | {_cells(x, test, base)} | {tail} |"]
    if len(done["valid"]) == len(parts["valid"]):
        xv = np.asarray([d["expected"] for d in done["valid"]])
        linear = _fit([xv], actual["valid"])
        rows.append(f"| {name}, linear on validation | {n} | {_cells(_apply(linear, [x]), test, base)} | {tail} |")
        both = _fit([by_bias["valid"], xv], actual["valid"])
        rows.append(f"| {name}, bias + LLM on validation (LLM weight {both[2]:+.3f}) | {n} | "
                    f"{_cells(_apply(both, [base, x]), test, base)} | {tail} |")
    return rows


def docs(args: argparse.Namespace) -> None:
    states = {m: json.loads(_path(m).read_text()) for m in MODELS if _path(m).exists()}
    if not states:
        return
    _, split, parts = _examples(args)
    bias = BiasedBaseline().fit(split.train)
    mean = GlobalMean().fit(split.train)
    actual = {p: np.asarray([float(e.target) for e in items]) for p, items in parts.items()}
    by_bias = {p: bias.predict([e.user for e in items], [e.item or "" for e in items]) for p, items in parts.items()}
    test, base = actual["test"], by_bias["test"]
    n_test = len(test)
    rows = ["| row | test examples | RMSE | MAE | RMSE minus bias (paired 95%) | r with rating | mass on digits | "
            "s/example |", "|---|---:|---:|---:|---:|---:|---:|---:|",
            f"| global mean | {n_test} | {_cells(np.full(n_test, mean.mean_ or 0.0), test, base)} | - | - | - |",
            f"| bias (mu + b_u + b_i) | {n_test} | {_cells(base, test, base)} | "
            f"{float(np.corrcoef(base, test)[0, 1]):.3f} | - | - |"]
    coef = _fit([by_bias["valid"]], actual["valid"])
    rows.append(f"| bias, linear on validation | {n_test} | {_cells(_apply(coef, [base]), test, base)} | - | - | - |")
    notes = []
    for model, state in states.items():
        for cue in state["cues"]:
            done = {part: state["lists"][f"{cue}|{part}"] for part in parts}
            rows.extend(_model_rows(f"{model}, cue {cue!r}", done, parts, actual, by_bias))
        notes.append(f"- `{model}`: `--llm {state['spec']}` ({state['llm']}, {state['dtype']}), {NAMES[model]}; "
                     f"{'finished ' + state['date'] if state.get('finished') else 'unfinished'}; "
                     f"{machine_text(state['machine'])}; command `{state['command']}`.")
    lines = ["## Rating prediction with each language model, MovieLens-100K (`rating` prompt, expected rating)", "",
             f"Leave-one-out split; {n_test} test examples (one seeded test interaction per sampled user, the newest "
             f"10 earlier items with their ratings as history) and {len(parts['valid'])} validation examples (one "
             "validation interaction per sampled user, training history only), used only to fit the *linear* and "
             "*bias + LLM* maps (least squares, predictions clipped to 1..5). The LLM's prediction is its expected "
             "rating over the digits 1..5 after a cue (`RatingPredictor.expected`), one row group per cue: the "
             "predictor's default \"Rating:\", after which the digit is read straight after the colon, and "
             "\"Rating: \", after which the space and the digit are read together, as the model would write its "
             "answer (SmolLM2's tokenizer keeps the space before a digit as its own token). *mass on "
             "digits* is the probability the model puts on them at all; *r*: Pearson correlation with the true "
             "rating; *s/example*: median over chunks of 25 examples. Bias and "
             "global mean are fitted on the training ratings. Interval: paired bootstrap 95% over test examples of "
             "RMSE minus the bias baseline's; a row whose interval is above zero predicts worse than the bias "
             "baseline. Rows with fewer test examples are unfinished (resumable).", "", *rows, "", "Models:", "",
             *notes, "",
             "Commands: `python benchmarks/rating_models.py run --model MODEL` for each model, then "
             "`python benchmarks/rating_models.py docs`."]
    write_section("rating-models", "\n".join(lines))


def main() -> None:
    parser = _script.parser(__doc__)
    parser.add_argument("--model", default="smollm2", choices=list(MODELS))
    parser.add_argument("--test-examples", type=int, default=300)
    parser.add_argument("--valid-examples", type=int, default=150)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--cues", nargs="+", default=list(CUES),
                        help="text after the rendered prompt before the digit is read (one row each)")
    parser.add_argument("--stop-at", type=float, default=0.0, help="Unix time after which the run stops, saved")
    _script.main("rating_models.py", parser, run, docs)


if __name__ == "__main__":
    main()
