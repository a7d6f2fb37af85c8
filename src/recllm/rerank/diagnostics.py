"""What a re-ranking call did: per-user ``Diagnostics`` and their aggregate over users for reports.

Counts are of what the model *tried* (raw output), while the result handed on is always grounded. The
grounded result's violations are re-checked and stored (``outside_result``), so the reported grounded
hallucination rate is a measured zero, not an assumed one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Diagnostics:
    """One re-ranking call for one user.

    - ``outputs``: generated texts that were parsed (listwise; 0 for scoring re-rankers, which cannot
      produce malformed output); ``format_errors``: outputs from which nothing at all could be read.
    - ``mentions``: references the model made to items (valid, hallucinated and repeated ones alike);
      ``hallucinated``: the raw references that name no candidate (an out-of-set title or id, an index out
      of range); ``duplicates``: references to a candidate already placed.
    - ``missing_filled``: candidates the model did not place, appended in retriever order.
    - ``outside_result``: items of the final result outside the candidate set (checked; always 0).
    - ``latency_s``: wall time of the whole call (prompt building, model, parsing, grounding).
    - ``prompt_tokens``, ``generated_tokens``, ``scored_tokens`` (continuation or label tokens scored),
      ``llm_calls``; ``history_dropped``: history items cut to fit the model's context.
    """

    reranker: str
    model: str
    backend: str
    n_candidates: int
    outputs: int = 0
    format_errors: int = 0
    mentions: int = 0
    hallucinated: tuple[str, ...] = ()
    duplicates: int = 0
    missing_filled: int = 0
    outside_result: int = 0
    latency_s: float = 0.0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    scored_tokens: int = 0
    llm_calls: int = 0
    history_dropped: int = 0
    raw_outputs: tuple[str, ...] = field(default=(), repr=False)

    @property
    def n_hallucinated(self) -> int:
        """Number of raw references outside the candidate set."""
        return len(self.hallucinated)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-ready values (``raw_outputs`` included)."""
        out = asdict(self)
        out["hallucinated"] = list(self.hallucinated)
        out["raw_outputs"] = list(self.raw_outputs)
        return out

    @classmethod
    def combine(cls, parts: Sequence[Diagnostics], *, reranker: str | None = None,
                latency_s: float | None = None) -> Diagnostics:
        """Several calls for the same user (e.g. permutations) as one record: counts and tokens are summed;
        ``latency_s`` is the given wall time (default: the sum); ``n_candidates`` is that of the first part."""
        if not parts:
            raise ValueError("Diagnostics.combine needs at least one part")
        first = parts[0]
        return replace(
            first,
            reranker=reranker or first.reranker,
            outputs=sum(p.outputs for p in parts),
            format_errors=sum(p.format_errors for p in parts),
            mentions=sum(p.mentions for p in parts),
            hallucinated=tuple(h for p in parts for h in p.hallucinated),
            duplicates=sum(p.duplicates for p in parts),
            missing_filled=sum(p.missing_filled for p in parts),
            outside_result=sum(p.outside_result for p in parts),
            latency_s=sum(p.latency_s for p in parts) if latency_s is None else latency_s,
            prompt_tokens=sum(p.prompt_tokens for p in parts),
            generated_tokens=sum(p.generated_tokens for p in parts),
            scored_tokens=sum(p.scored_tokens for p in parts),
            llm_calls=sum(p.llm_calls for p in parts),
            history_dropped=max(p.history_dropped for p in parts),
            raw_outputs=tuple(o for p in parts for o in p.raw_outputs),
        )


@dataclass(frozen=True)
class DiagnosticsSummary:
    """Diagnostics of many users, reported beside every LLM figure (docs/protocols.md).

    Rates: ``format_error_rate`` per parsed output (0 when nothing was generated); ``hallucination_rate``
    and ``duplicate_rate`` per reference the model made (raw: what the model tried);
    ``grounded_hallucination_rate`` per item handed on (measured; 0 by construction); ``missing_rate`` per
    candidate. Latency percentiles are per user (linear interpolation). ``generated_tokens_per_second`` is
    generated tokens over total latency; ``processed_tokens_per_second`` counts prompt, scored and generated
    tokens alike, the useful figure for scoring re-rankers.
    """

    users: int
    candidates: int
    outputs: int
    format_errors: int
    mentions: int
    hallucinated: int
    duplicates: int
    missing_filled: int
    outside_result: int
    format_error_rate: float
    hallucination_rate: float
    grounded_hallucination_rate: float
    duplicate_rate: float
    missing_rate: float
    latency_p50_s: float
    latency_p95_s: float
    latency_mean_s: float
    latency_total_s: float
    prompt_tokens: int
    generated_tokens: int
    scored_tokens: int
    llm_calls: int
    generated_tokens_per_second: float
    processed_tokens_per_second: float
    rerankers: tuple[str, ...]
    models: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-ready values."""
        out = asdict(self)
        out["rerankers"] = list(self.rerankers)
        out["models"] = list(self.models)
        return out


def _rate(numerator: float, denominator: float) -> float:
    return float(numerator) / denominator if denominator > 0 else 0.0


def summarize_diagnostics(records: Iterable[Diagnostics]) -> DiagnosticsSummary:
    """Aggregate per-user diagnostics: totals, rates, p50/p95 latency, throughput, models used."""
    diags = list(records)
    latencies = np.array([d.latency_s for d in diags], dtype=np.float64)
    total_latency = float(latencies.sum()) if diags else 0.0
    candidates = sum(d.n_candidates for d in diags)
    mentions = sum(d.mentions for d in diags)
    hallucinated = sum(d.n_hallucinated for d in diags)
    prompt_tokens = sum(d.prompt_tokens for d in diags)
    generated = sum(d.generated_tokens for d in diags)
    scored = sum(d.scored_tokens for d in diags)
    outputs = sum(d.outputs for d in diags)
    format_errors = sum(d.format_errors for d in diags)
    duplicates = sum(d.duplicates for d in diags)
    missing = sum(d.missing_filled for d in diags)
    outside = sum(d.outside_result for d in diags)
    return DiagnosticsSummary(
        users=len(diags), candidates=candidates, outputs=outputs, format_errors=format_errors, mentions=mentions,
        hallucinated=hallucinated, duplicates=duplicates, missing_filled=missing, outside_result=outside,
        format_error_rate=_rate(format_errors, outputs),
        hallucination_rate=_rate(hallucinated, mentions),
        grounded_hallucination_rate=_rate(outside, candidates),
        duplicate_rate=_rate(duplicates, mentions),
        missing_rate=_rate(missing, candidates),
        latency_p50_s=float(np.percentile(latencies, 50)) if diags else 0.0,
        latency_p95_s=float(np.percentile(latencies, 95)) if diags else 0.0,
        latency_mean_s=float(latencies.mean()) if diags else 0.0,
        latency_total_s=total_latency,
        prompt_tokens=prompt_tokens, generated_tokens=generated, scored_tokens=scored,
        llm_calls=sum(d.llm_calls for d in diags),
        generated_tokens_per_second=_rate(generated, total_latency),
        processed_tokens_per_second=_rate(prompt_tokens + generated + scored, total_latency),
        rerankers=tuple(sorted({d.reranker for d in diags})),
        models=tuple(sorted({f"{d.backend}:{d.model}" for d in diags})),
    )
