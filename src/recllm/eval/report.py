"""Evaluation reports: one JSON record and one Markdown table per run, with the machine and command."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    """Cores, memory, GPU and library versions: enough to say where a figure came from."""
    info: dict[str, Any] = {"cores": os.cpu_count(), "platform": platform.platform(),
                            "python": platform.python_version()}
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        info["memory_gib"] = None
    gpu = None
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    info["gpu"] = gpu or "none"
    import numpy

    info["numpy"] = numpy.__version__
    return info


@dataclass
class ModelRow:
    """One ranker's figures. ``diagnostics`` is the LLM diagnostics summary (``DiagnosticsSummary.to_dict``)
    for rows that used a language model; ``breakdown`` holds named sub-tables (e.g. NDCG@10 by the target's
    position among the candidates), each a mapping from a column label to a value."""

    model: str
    params: dict[str, Any]
    metrics: dict[str, float]
    n_users: int
    fit_seconds: float
    recommend_seconds_per_1k_users: float
    notes: list[str] = field(default_factory=list)
    diagnostics: dict[str, Any] | None = None
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Report:
    dataset: str
    dataset_stats: dict[str, int]
    split: str
    split_stats: dict[str, int]
    protocol: str
    ks: list[int]
    seed: int
    rows: list[ModelRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    command: str = field(default_factory=lambda: "recllm " + shlex.join(sys.argv[1:]))
    machine: dict[str, Any] = field(default_factory=machine_info)
    date: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))

    def metric_names(self) -> list[str]:
        names: list[str] = []
        for row in self.rows:
            names += [m for m in row.metrics if m not in names]
        return names

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def to_markdown(self) -> str:
        names = self.metric_names()
        head = ["model", *names, "fit s", "rec s / 1k users"]
        lines = [
            f"**{self.dataset}**, split `{self.split}` ({_stats(self.split_stats)}), protocol `{self.protocol}`, "
            f"seed {self.seed}, {self.rows[0].n_users if self.rows else 0} users evaluated.",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
        ]
        for row in self.rows:
            cells = [row.model, *(_fmt(row.metrics.get(n)) for n in names), f"{row.fit_seconds:.1f}",
                     f"{row.recommend_seconds_per_1k_users:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines += self._diagnostics_table() + self._breakdown_tables()
        m = self.machine
        lines += ["", f"Command: `{self.command}`  ",
                  f"Machine: {m.get('cores')} cores, {m.get('memory_gib')} GiB, GPU: {m.get('gpu')}; "
                  f"{self.date}."]
        notes = list(self.notes) + [f"{row.model}: {n}" for row in self.rows for n in row.notes]
        if notes:
            lines += ["", *(f"- {n}" for n in notes)]
        return "\n".join(lines) + "\n"

    def _diagnostics_table(self) -> list[str]:
        """The LLM diagnostics reported beside every LLM figure (empty without LLM rows)."""
        rows = [r for r in self.rows if r.diagnostics]
        if not rows:
            return []
        head = ["LLM row", "model (backend)", "format errors", "hallucinated (raw)", "hallucinated (grounded)",
                "duplicates", "filled", "p50 s/user", "p95 s/user", "tokens/s", "calls"]
        lines = ["", "LLM diagnostics (rates per output, per reference the model made, per item handed on; "
                 "latency per user; tokens/s counts prompt, scored and generated tokens):", "",
                 "| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
        for row in rows:
            d = row.diagnostics or {}
            models = ", ".join(d.get("models", [])) or "-"
            cells = [row.model, models, _pct(d.get("format_error_rate")), _pct(d.get("hallucination_rate")),
                     _pct(d.get("grounded_hallucination_rate")), _pct(d.get("duplicate_rate")),
                     _pct(d.get("missing_rate")), f"{d.get('latency_p50_s', 0.0):.2f}",
                     f"{d.get('latency_p95_s', 0.0):.2f}", f"{d.get('processed_tokens_per_second', 0.0):.0f}",
                     str(d.get("llm_calls", 0))]
            lines.append("| " + " | ".join(cells) + " |")
        return lines

    def _breakdown_tables(self) -> list[str]:
        """One table per breakdown name, a row per ranker that has it."""
        lines: list[str] = []
        names: list[str] = []
        for row in self.rows:
            names += [n for n in row.breakdown if n not in names]
        for name in names:
            rows = [r for r in self.rows if name in r.breakdown]
            columns: list[str] = []
            for row in rows:
                columns += [c for c in row.breakdown[name] if c not in columns]
            lines += ["", f"{name}:", "", "| model | " + " | ".join(columns) + " |",
                      "|---|" + "|".join(["---:"] * len(columns)) + "|"]
            for row in rows:
                lines.append("| " + " | ".join([row.model, *(_fmt(row.breakdown[name].get(c))
                                                              for c in columns)]) + " |")
        return lines

    def write(self, directory: str | Path, stem: str) -> tuple[Path, Path]:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
        json_path.write_text(self.to_json())
        md_path.write_text(self.to_markdown())
        return json_path, md_path


def _fmt(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.1f}%"


def _stats(stats: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in stats.items())
