"""The audit as JSON, Markdown and one self-contained HTML page with its plots (matplotlib, PNGs inlined)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from recllm.eval.audit import AuditReport, ModelAudit
from recllm.eval.fairness import GroupReport, largest_gap
from recllm.eval.llm_robustness import robustness_rows
from recllm.eval.llm_trust import Faithfulness, PositionBias
from recllm.eval.sensitivity import sensitivity_rows

ROBUSTNESS_HEADER = ["condition", "Kendall's tau with the reference", "overlap@{k}", "users"]
SENSITIVITY_HEADER = ["attribute", "measure", "lowest mean similarity (value)", "mean over values", "SNSR", "SNSV"]


def _gap(report: GroupReport | None) -> str:
    if report is None or report.gap is None:
        return "-"
    p = report.p_adjusted if report.p_adjusted is not None else report.p_value
    test = "" if p is None else f", p = {p:.3f}" + ("" if report.p_adjusted is None else " Holm")
    flag = " **(significant)**" if report.significant else ""
    return (f"{report.gap:.4f} [{report.gap_low:.4f}, {report.gap_high:.4f}] {report.best} over "
            f"{report.worst}{test}{flag}")




def summary_rows(report: AuditReport) -> list[list[str]]:
    """One row per model: accuracy, the largest group gap, exposure, popularity and robustness."""
    k = report.k
    rows = []
    for m in report.models:
        largest = largest_gap(m.groups.get(f"NDCG@{k}", {}))
        gap = f"{largest.attribute}: {_gap(largest)}" if largest else "-"
        robust = m.robustness
        rows.append([m.name, f"{m.ndcg:.4f}", f"{m.hit:.4f}", gap, f"{m.gini:.3f}", f"{m.long_tail_share:.1%}",
                     f"{m.coverage:.1%}", f"{m.top1_popularity:.1f}", f"{m.topk_popularity:.1f}",
                     f"{report.targets_popularity:.1f}",
                     f"{robust.overlap:.3f}" if robust else "-", f"{robust.kendall_tau:.3f}" if robust else "-"])
    return rows


def reranked_rows(report: AuditReport) -> list[list[str]]:
    """One row per re-ranked list kind (the first model's own lists first): accuracy, its paired difference to
    the model's own lists on the same users, the largest group gap, exposure and popularity."""
    k = report.k
    rows = []
    for m in report.reranked:
        largest = largest_gap(m.groups.get(f"NDCG@{k}", {}))
        versus = "-" if m.versus is None else f"{m.versus[0]:+.4f} [{m.versus[1]:+.4f}, {m.versus[2]:+.4f}]"
        rows.append([m.name, f"{m.ndcg:.4f}", f"{m.hit:.4f}", versus,
                     f"{largest.attribute}: {_gap(largest)}" if largest else "-", f"{m.gini:.3f}",
                     f"{m.long_tail_share:.1%}", f"{m.coverage:.1%}", f"{m.top1_popularity:.1f}",
                     f"{m.topk_popularity:.1f}", f"{report.reranked_targets_popularity:.1f}"])
    return rows


RERANKED_HEADER = ["list", "NDCG@{k}", "HR@{k}", "minus the model's own (paired 95%)",
                   "largest NDCG@{k} gap between groups (95%, Holm p)", "exposure Gini", "long-tail share",
                   "coverage", "top-1 popularity pct", "top-{k} popularity pct", "targets' popularity pct"]
RERANKED_NOTE = ("The first model's top 20 re-ordered by each LLM re-ranker (neutral prompt; below the 20 the "
                 "model's ranking follows), and that re-ordering after each mitigation (of the re-ranked candidates, "
                 "with the re-ranker's scores, as the pipeline does), beside the model's own lists for the same "
                 "users: what the re-ranker changes for each group of users and for the items' exposure. "
                 "Differences: paired bootstrap 95% over users. Exposure and coverage are over these users' lists, "
                 "so compare them within this table only.")


SUMMARY_HEADER = ["model", "NDCG@{k}", "HR@{k}", "largest NDCG@{k} gap between groups (95%, Holm p)", "exposure Gini",
                  "long-tail share", "coverage", "top-1 popularity pct", "top-{k} popularity pct",
                  "targets' popularity pct", "overlap@{k}, oldest 10% removed", "Kendall tau, oldest 10% removed"]


def position_rows(bias: PositionBias) -> list[list[str]]:
    """One row per order (one shown order, aggregated): NDCG@k per bucket of shown positions, mean, spread."""
    rows = []
    for label, means, mean, spread, (low, high), (null_mean, null_high), p in (
            ("one shown order", bias.single, bias.mean_single, bias.spread_single, bias.spread_single_interval,
             bias.null_single, bias.p_single),
            (f"{bias.permutations} cyclic rotations, Borda", bias.aggregated, bias.mean_aggregated,
             bias.spread_aggregated, bias.spread_aggregated_interval, bias.null_aggregated, bias.p_aggregated)):
        measured = not np.isnan(null_mean)  # audits written before the reference was added lack it
        rows.append([label, *(f"{m:.3f}" for m in means), f"{mean:.3f}",
                     f"{spread:.1%} [{low:.1%}, {high:.1%}]",
                     f"{null_mean:.1%} ({null_high:.1%})" if measured else "-", f"{p:.3f}" if measured else "-"])
    return rows


def position_header(bias: PositionBias) -> list[str]:
    return ["order", *(f"positions {b} ({n})" for b, n in zip(bias.buckets, bias.counts, strict=True)),
            f"NDCG@{bias.k}", "spread (max - min) / mean [95%]", "no-effect spread: mean (95th pct)",
            "p (no effect)"]


POSITION_NOTE = ("Each user's held-out target among the retriever's other top items, shuffled, put at a shown position "
                 "balanced over users (users per bucket in brackets); every candidate has the same retriever score. "
                 "0% spread: the shown position does not matter. With few users per bucket the bucket means differ by "
                 "chance alone: the no-effect spread is what the same users' values give when dealt into the buckets "
                 "at random (mean and 95th percentile of those deals), and p is the share of deals at least as "
                 "spread as observed; a spread within the no-effect range is no evidence of a position effect.")

FAITHFULNESS_HEADER = ["re-ranker", "lists", "raw hallucination rate", "grounded hallucination rate",
                       "format error rate", "explanations checked", "every checkable claim true",
                       "violations per explanation", "mistakes by kind"]


def faithfulness_rows(items: list[Faithfulness]) -> list[list[str]]:
    """One row per re-ranker: what it made up in ranking, and how true the explanations of its first items are."""
    def pct(value: Any) -> str:
        return "-" if value is None else f"{value:.1%}"

    return [[f.reranker, str(f.users), pct(f.diagnostics.get("hallucination_rate")),
             pct(f.diagnostics.get("grounded_hallucination_rate")), pct(f.diagnostics.get("format_error_rate")),
             str(f.explained), pct(f.true_share), f"{f.violations_per_explanation:.2f}",
             "; ".join(f"{kind} {n}" for kind, n in f.violation_kinds.items()) or "none"] for f in items]


FAITHFULNESS_NOTE = ("Over the position probe's lists (one shown order): hallucinations are references to items "
                     "outside the candidates in the model's raw output, and in the list handed on (grounded, "
                     "always 0). The item each list puts first is explained by the same model with the `explain` "
                     "prompt and checked against the catalog (titles within the history, years, genres, numbers, "
                     "a reason tied to the user); a text that fails is replaced by the grounded template in the "
                     "product.")


def _setup(report: AuditReport) -> str:
    return (f"{report.dataset}, split `{report.split}`, protocol `{report.protocol}` (every unseen item ranked), "
            f"{report.users} seeded test users (seed {report.seed}), k = {report.k}. Group intervals: bootstrap "
            "95% over users; a gap compares the best and worst group of at least 20 users, chosen on the point "
            "estimates; its p-value is a permutation test of the largest gap (so the choice is part of the "
            "test), Holm-adjusted over the model's attributes and metrics, significant below 0.05. Long tail: "
            "items outside the 20% with the most training interactions. Popularity: training-interaction "
            "percentile (100: most popular). "
            "Robustness: each user scored from the history alone, with and without its oldest 10% (at least "
            f"one item). {report.date}.")


def group_table(report: AuditReport, metric: str, attribute: str, models: list[ModelAudit] | None = None
                ) -> tuple[list[str], list[list[str]]]:
    """Each group's mean with its interval and users per model (``models``, default the report's), and the gap."""
    audited = report.models if models is None else models
    names = sorted({g.group for m in audited for g in m.groups[metric][attribute].groups})
    header = ["model", *names, "gap (95%)"]
    rows = []
    for m in audited:
        by = {g.group: g for g in m.groups[metric][attribute].groups}
        cells = [f"{by[n].mean:.3f} [{by[n].low:.3f}, {by[n].high:.3f}] ({by[n].users})" if n in by else "-"
                 for n in names]
        rows.append([m.name, *cells, _gap(m.groups[metric][attribute])])
    return header, rows


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def audit_markdown(report: AuditReport) -> str:
    """The audit as Markdown: set-up, the summary table, then each attribute's groups per metric."""
    k = report.k
    lines = [f"# Audit: {report.dataset}", "", _setup(report), "",
             *_markdown_table([h.format(k=k) for h in SUMMARY_HEADER], summary_rows(report))]
    metric = f"NDCG@{k}"
    for attribute in report.models[0].groups.get(metric, {}) if report.models else []:
        header, rows = group_table(report, metric, attribute)
        lines += ["", f"## {metric} by {attribute}", "", *_markdown_table(header, rows)]
        skipped = report.models[0].groups[metric][attribute].skipped
        if skipped:
            lines += ["", "Not compared (fewer than 20 users or unknown): " + "; ".join(skipped) + "."]
    if report.reranked:
        lines += ["", f"## Re-ranked lists: {report.reranked_users} users", "", RERANKED_NOTE, "",
                  *_markdown_table([h.format(k=k) for h in RERANKED_HEADER], reranked_rows(report))]
        for attribute in report.reranked[0].groups.get(metric, {}):
            header, rows = group_table(report, metric, attribute, report.reranked)
            lines += ["", f"### {metric} by {attribute}, re-ranked lists", "", *_markdown_table(header, rows)]
    for sensitivity in report.sensitivity:
        lines += ["", f"## Stated user attributes (FaiRLLM): {sensitivity.reranker}, top {sensitivity.k}, "
                  f"{sensitivity.users} users", "", *_markdown_table(SENSITIVITY_HEADER, sensitivity_rows(sensitivity))]
    for robust in report.prompt_robustness:
        lines += ["", f"## Prompt robustness: {robust.reranker}, top {robust.k}, {robust.users} users", "",
                  *_markdown_table([h.format(k=robust.k) for h in ROBUSTNESS_HEADER], robustness_rows(robust))]
    for bias in report.position_bias:
        lines += ["", f"## Position bias: {bias.reranker}, {bias.users} users", "", POSITION_NOTE, "",
                  *_markdown_table(position_header(bias), position_rows(bias))]
    if report.faithfulness:
        lines += ["", "## Faithfulness and hallucination", "", FAITHFULNESS_NOTE, "",
                  *_markdown_table(FAITHFULNESS_HEADER, faithfulness_rows(report.faithfulness))]
    if report.groups_skipped:
        lines += ["", "User attributes not used as groups: "
                  + "; ".join(f"{a} ({why})" for a, why in report.groups_skipped.items()) + "."]
    return "\n".join(lines) + "\n"


# ---- HTML -----------------------------------------------------------------------------------------------------


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _group_bars(plt: Any, models: list[ModelAudit], metric: str, attribute: str, what: str) -> Any:
    """Bars of each group's ``metric`` with its 95% interval, one colour per model; the figure is closed."""
    names = sorted({g.group for m in models for g in m.groups[metric][attribute].groups})
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(names) * max(1, len(models))), 3.6))
    width = 0.8 / len(models)
    for i, m in enumerate(models):
        by = {g.group: g for g in m.groups[metric][attribute].groups}
        means = np.asarray([by[n].mean if n in by else np.nan for n in names])
        low = np.asarray([by[n].mean - by[n].low if n in by else 0 for n in names])
        high = np.asarray([by[n].high - by[n].mean if n in by else 0 for n in names])
        ax.bar(np.arange(len(names)) + i * width, means, width, yerr=[low, high], capsize=2, label=m.name)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=45 if len(names) > 6 else 0,
                  ha="right" if len(names) > 6 else "center")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by {attribute}{what} (95% intervals)")
    ax.legend(fontsize="small")
    plt.close(fig)
    return fig


def _popularity_bars(plt: Any, models: list[ModelAudit], targets: float, k: int, what: str) -> Any:
    """Popularity percentile of the first item and of the top k per model, against the targets'."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(models)), 3.6))
    x = np.arange(len(models))
    ax.bar(x - 0.2, [m.top1_popularity for m in models], 0.4, label="item ranked first")
    ax.bar(x + 0.2, [m.topk_popularity for m in models], 0.4, label=f"top {k}")
    ax.axhline(targets, color="black", linestyle="--", label="held-out targets")
    ax.set_xticks(x, [m.name for m in models], rotation=20 if len(models) > 3 else 0,
                  ha="right" if len(models) > 3 else "center")
    ax.set_ylabel("training popularity percentile")
    ax.set_title(f"Popularity of what is recommended{what}")
    ax.legend(fontsize="small")
    plt.close(fig)
    return fig


def _plots(report: AuditReport) -> list[tuple[str, str]]:
    """(caption, base64 PNG) per plot: groups per attribute, exposure Lorenz curves, popularity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    metric = f"NDCG@{report.k}"
    for models, what in ((report.models, ""), (report.reranked, ", re-ranked lists")):
        for attribute in list(models[0].groups.get(metric, {})) if models else []:
            out.append((f"{metric} by {attribute}{what}", _png(_group_bars(plt, models, metric, attribute, what))))
    fig, ax = plt.subplots(figsize=(5.0, 4.0))
    for m in report.models:
        ax.plot(np.linspace(0, 1, len(m.lorenz)), m.lorenz, label=f"{m.name} (Gini {m.gini:.2f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="equal exposure")
    ax.set_xlabel("share of catalog items, least shown first")
    ax.set_ylabel("share of exposure")
    ax.set_title(f"Exposure of the top-{report.k} lists (Lorenz curves)")
    ax.legend(fontsize="small")
    out.append(("Exposure Lorenz curves", _png(fig)))
    plt.close(fig)
    for models, targets, what in ((report.models, report.targets_popularity, ""),
                                  (report.reranked, report.reranked_targets_popularity, ", re-ranked lists")):
        if models:
            out.append((f"Popularity bias{what}", _png(_popularity_bars(plt, models, targets, report.k, what))))
    for bias in report.position_bias:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        x = np.arange(len(bias.buckets))
        ax.bar(x - 0.2, bias.single, 0.4, label=f"one shown order (spread {bias.spread_single:.0%})")
        ax.bar(x + 0.2, bias.aggregated, 0.4,
               label=f"{bias.permutations} rotations, Borda (spread {bias.spread_aggregated:.0%})")
        ax.set_xticks(x, [f"{b}" for b in bias.buckets])
        ax.set_xlabel("shown position of the target")
        ax.set_ylabel(f"NDCG@{bias.k}")
        ax.set_title(f"Position bias of {bias.reranker}")
        ax.legend(fontsize="small")
        out.append((f"Position bias of {bias.reranker}", _png(fig)))
        plt.close(fig)
    return out


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c.replace('**', ''))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def audit_html(report: AuditReport) -> str:
    """One self-contained page: set-up, summary, the plots and the group tables."""
    k = report.k
    parts = [f"<h1>Audit: {html.escape(report.dataset)}</h1>", f"<p>{html.escape(_setup(report))}</p>",
             "<h2>Summary</h2>", _html_table([h.format(k=k) for h in SUMMARY_HEADER], summary_rows(report))]
    for caption, png in _plots(report):
        parts.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{png}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    metric = f"NDCG@{k}"
    for attribute in report.models[0].groups.get(metric, {}) if report.models else []:
        header, rows = group_table(report, metric, attribute)
        parts += [f"<h2>{html.escape(metric)} by {html.escape(attribute)}</h2>", _html_table(header, rows)]
    if report.reranked:
        parts += [f"<h2>Re-ranked lists: {report.reranked_users} users</h2>", f"<p>{html.escape(RERANKED_NOTE)}</p>",
                  _html_table([h.format(k=k) for h in RERANKED_HEADER], reranked_rows(report))]
        for attribute in report.reranked[0].groups.get(metric, {}):
            header, rows = group_table(report, metric, attribute, report.reranked)
            parts += [f"<h3>{html.escape(metric)} by {html.escape(attribute)}, re-ranked lists</h3>",
                      _html_table(header, rows)]
    for sensitivity in report.sensitivity:
        parts += [f"<h2>Stated user attributes (FaiRLLM): {html.escape(sensitivity.reranker)}, top {sensitivity.k}, "
                  f"{sensitivity.users} users</h2>", _html_table(SENSITIVITY_HEADER, sensitivity_rows(sensitivity))]
    for robust in report.prompt_robustness:
        parts += [f"<h2>Prompt robustness: {html.escape(robust.reranker)}, top {robust.k}, {robust.users} users</h2>",
                  "<p>Agreement of the ranking with the one from the configured prompt when the instructions are "
                  "reworded (two paraphrases) and when the history is shown in a shuffled order.</p>",
                  _html_table([h.format(k=robust.k) for h in ROBUSTNESS_HEADER], robustness_rows(robust))]
    for bias in report.position_bias:
        parts += [f"<h2>Position bias: {html.escape(bias.reranker)}, {bias.users} users</h2>",
                  f"<p>{html.escape(POSITION_NOTE)}</p>", _html_table(position_header(bias), position_rows(bias))]
    if report.faithfulness:
        parts += ["<h2>Faithfulness and hallucination</h2>", f"<p>{html.escape(FAITHFULNESS_NOTE)}</p>",
                  _html_table(FAITHFULNESS_HEADER, faithfulness_rows(report.faithfulness))]
        for f in report.faithfulness:
            for example in f.examples:
                parts.append(f"<blockquote><p>{html.escape(example['generated'].strip())}</p><p><em>Failed the "
                             f"check: {html.escape('; '.join(example['violations']))}</em></p></blockquote>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
             "td,th{border:1px solid #ccc;padding:4px 6px;text-align:right}td:first-child{text-align:left}"
             "figure{margin:1.5em 0}img{max-width:100%}")
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>recllm audit: "
            f"{html.escape(report.dataset)}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>")


def write_audit(report: AuditReport, out: Path, stem: str) -> tuple[Path, Path, Path]:
    """Write ``STEM.json``, ``STEM.md`` and ``STEM.html`` into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / f"{stem}.json", out / f"{stem}.md", out / f"{stem}.html")
    paths[0].write_text(json.dumps(report.to_dict(), indent=1, default=float))
    paths[1].write_text(audit_markdown(report))
    paths[2].write_text(audit_html(report))
    return paths


def audits_dir() -> Path:
    """Where ``recllm audit`` publishes its latest report per dataset and model: ``$RECLLM_HOME/audits``."""
    from recllm.artifacts import recllm_home

    return recllm_home() / "audits"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def published_audit(dataset: str, model: str, suffix: str = ".html") -> Path:
    """The path of the latest published audit (``.html`` or ``.json``) of ``model`` on ``dataset``."""
    return audits_dir() / _safe(dataset) / f"{_safe(model)}{suffix}"


def pipeline_audit_name(retriever: str, reranker: str) -> str:
    """The name an audit is published under when it holds ``reranker``'s re-ordering of ``retriever``'s lists."""
    return f"{retriever}+{reranker}"


def audit_names(retriever: str, reranker: str | None) -> list[str]:
    """The published audits that describe a pipeline, best first: the audit of its retriever together with its
    re-ranker (when it re-ranks), then the audit of the retriever alone."""
    return [pipeline_audit_name(retriever, reranker), retriever] if reranker else [retriever]


def publish_audit(paths: tuple[Path, Path, Path], dataset: str, models: list[str]) -> list[Path]:
    """Copy a written report (JSON, Markdown, HTML) to the latest-audit place of every model it covers, where
    a service whose pipeline uses that retriever on that dataset serves it at ``/audit``. Each copy is
    written to a temporary name and renamed, so a reader never sees half a report."""
    import os
    import tempfile

    published = []
    for model in models:
        for source, suffix in ((paths[2], ".html"), (paths[0], ".json")):
            target = published_audit(dataset, model, suffix)
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
            with os.fdopen(handle, "wb") as out:
                out.write(source.read_bytes())
            os.replace(temporary, target)
            published.append(target)
    return published

