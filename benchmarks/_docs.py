"""Write a benchmark's section into docs/benchmarks.md between its own markers, leaving others intact; the
paired bootstrap interval the sections report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recllm.ranking import ndcg_from_ranks

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = ("# Benchmarks\n\nEvery figure below is written by a script in `benchmarks/`; each section names its "
          "command, protocol, machine and date.\n")


def write_section(key: str, body: str, doc: Path = DOC) -> None:
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    text = doc.read_text() if doc.exists() else HEADER
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def machine_text(info: dict[str, object]) -> str:
    """The machine of a result (``recllm.eval.report.machine_info``) in one line."""
    return (f"{info.get('cores')} cores, {info.get('memory_gib')} GiB, GPU {info.get('gpu', 'none')}, "
            f"torch {info.get('torch', '?')}")


def paired_interval(a: np.ndarray, b: np.ndarray, rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Paired bootstrap 95% interval over users of mean(a - b)."""
    rng = np.random.default_rng(seed)
    diff = np.asarray(a) - np.asarray(b)
    means = diff[rng.integers(0, len(diff), (rounds, len(diff)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


POSITION_BUCKETS = ((0, 5), (5, 10), (10, 15), (15, 20))
"""Shown positions 1-5, 6-10, 11-15 and 16-20 of a 20-candidate list (0-based bounds)."""


def ndcg_by_position(shown: np.ndarray, ranks: np.ndarray) -> list[str]:
    """NDCG@10 of the users whose target was shown in each position bucket, with their count in brackets ("-" for
    an empty bucket): a flat row is a ranker free of position bias."""
    ndcg = ndcg_from_ranks(ranks, 10)
    masks = [(shown >= low) & (shown < high) for low, high in POSITION_BUCKETS]
    return [f"{float(ndcg[m].mean()):.3f} ({int(m.sum())})" if m.any() else "-" for m in masks]
