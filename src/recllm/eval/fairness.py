"""Fairness, exposure and robustness measures for recommendation lists: the figures ``recllm audit`` reports.

- List similarity under a changed prompt (FaiRLLM, Zhang et al. 2023): ``jaccard_at_k``, ``serp_star_at_k``,
  ``prag_star_at_k``, each 1 for identical lists and 0 for disjoint ones, and ``sensitivity_spread`` (SNSR,
  the max-min difference, and SNSV, the standard deviation, of a similarity across an attribute's values).
- Item-side exposure: ``exposure_counts``, ``gini`` (0: every item shown equally; 1: one item takes it all),
  ``long_tail_share`` (exposure outside the most popular 20% of items), ``coverage``.
- Agreement of two rankings: ``kendall_tau`` (tau-b over shared scores) and ``overlap_at_k``.
- User groups: ``group_metric`` (each group's mean of a per-user metric with a bootstrap 95% interval, and the
  largest gap between groups with its own interval).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import kendalltau

from recllm.errors import RecllmError

# ---- list similarity (FaiRLLM) ----------------------------------------------------------------------------


def _top(items: Sequence[Hashable], k: int, what: str) -> list[Hashable]:
    if k < 1:
        raise RecllmError(f"{what}: K must be at least 1, got {k}")
    top = list(items)[:k]
    if len(set(top)) != len(top):
        raise RecllmError(f"{what}: a list holds the same item twice in its top {k}")
    return top


def jaccard_at_k(first: Sequence[Hashable], second: Sequence[Hashable], k: int) -> float:
    """|A ∩ B| / |A ∪ B| of the two top-``k`` lists (1 when both are empty)."""
    a, b = set(_top(first, k, "Jaccard@K")), set(_top(second, k, "Jaccard@K"))
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def serp_star_at_k(attributed: Sequence[Hashable], neutral: Sequence[Hashable], k: int) -> float:
    """SERP*@K: the attributed list's items that the neutral list also holds, each weighted by its place in
    the attributed list (K - rank + 1 for ranks 1..K), over the weight of a full identical list, K(K+1)/2."""
    shown = _top(attributed, k, "SERP*@K")
    reference = set(_top(neutral, k, "SERP*@K"))
    return sum(k - rank for rank, item in enumerate(shown) if item in reference) / (k * (k + 1) / 2)


def prag_star_at_k(attributed: Sequence[Hashable], neutral: Sequence[Hashable], k: int) -> float:
    """PRAG*@K: of the pairs (v1 before v2) in the attributed top K, the share whose order the neutral top K
    keeps: v1 is in the neutral list and ranked above v2 there (an item outside it ranks below all). Normalised
    by the K(K-1)/2 pairs of a full list, as the FaiRLLM reference code does, so identical lists give 1; for
    K = 1 it is 1 when the single items agree."""
    shown = _top(attributed, k, "PRAG*@K")
    place = {item: rank for rank, item in enumerate(_top(neutral, k, "PRAG*@K"))}
    if k == 1:
        return float(bool(shown) and shown[0] in place)
    kept = 0
    for i, first in enumerate(shown):
        if first not in place:
            continue
        for second in shown[i + 1:]:
            kept += place[first] < place.get(second, k)
    return kept / (k * (k - 1) / 2)


@dataclass(frozen=True)
class Spread:
    """A similarity across the values of one sensitive attribute: SNSR (max - min), SNSV (standard deviation
    over values, population form as FaiRLLM), and which values are farthest from the neutral ranking."""

    values: Mapping[str, float]
    snsr: float
    snsv: float
    least_similar: str
    most_similar: str


def sensitivity_spread(values: Mapping[str, float]) -> Spread:
    """SNSR and SNSV of one attribute from each value's mean similarity to the neutral ranking."""
    if not values:
        raise RecllmError("sensitivity spread needs the similarity of at least one attribute value")
    names = list(values)
    array = np.asarray([values[n] for n in names], dtype=np.float64)
    return Spread(dict(values), float(array.max() - array.min()), float(array.std()),
                  least_similar=names[int(array.argmin())], most_similar=names[int(array.argmax())])


# ---- exposure --------------------------------------------------------------------------------------------


def exposure_counts(top_lists: np.ndarray, n_items: int) -> np.ndarray:
    """How often each item (0..n_items-1) appears in the users' top lists (one row per user)."""
    lists = np.asarray(top_lists, dtype=np.int64)
    if lists.size and (lists.min() < 0 or lists.max() >= n_items):
        raise RecllmError(f"exposure: an item index is outside 0..{n_items - 1}")
    return np.bincount(lists.ravel(), minlength=n_items).astype(np.float64)


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (exposure per catalog item, zeros included): 0 when all are
    equal, 1 - 1/n when one item has everything."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.size == 0 or (x < 0).any():
        raise RecllmError("Gini needs at least one value, none negative")
    total = x.sum()
    if total == 0:
        return 0.0
    n = x.size
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * total))


def long_tail_share(exposure: np.ndarray, popularity: np.ndarray, head: float = 0.2) -> float:
    """Share of all exposure that goes to long-tail items: outside the ``head`` share of items with the most
    training interactions (ties at the border go to the head)."""
    exposure, popularity = np.asarray(exposure, dtype=np.float64), np.asarray(popularity, dtype=np.float64)
    if exposure.shape != popularity.shape:
        raise RecllmError(f"exposure and popularity cover different items: {exposure.shape} vs {popularity.shape}")
    if not 0 < head < 1:
        raise RecllmError(f"the head share must be between 0 and 1, got {head}")
    total = exposure.sum()
    if total == 0:
        return 0.0
    n_head = int(np.ceil(head * len(popularity)))
    threshold = np.sort(popularity)[::-1][n_head - 1]
    return float(exposure[popularity < threshold].sum() / total)


def coverage(exposure: np.ndarray) -> float:
    """Share of catalog items shown to at least one user."""
    exposure = np.asarray(exposure)
    return float((exposure > 0).mean()) if exposure.size else 0.0


# ---- agreement of rankings ---------------------------------------------------------------------------------


def kendall_tau(first: Sequence[float], second: Sequence[float]) -> float:
    """Kendall's tau-b of two score vectors over the same items (1: same order, -1: reversed); 1 when both
    are constant, 0 when only one is (no order to agree with)."""
    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise RecllmError(f"Kendall's tau needs two score vectors of one length, got {a.shape} and {b.shape}")
    if a.size < 2:
        return 1.0
    flat_a, flat_b = np.ptp(a) == 0, np.ptp(b) == 0
    if flat_a or flat_b:
        return 1.0 if flat_a and flat_b else 0.0
    return float(kendalltau(a, b).statistic)


def overlap_at_k(first: Sequence[Hashable], second: Sequence[Hashable], k: int) -> float:
    """|top-k of first ∩ top-k of second| / k."""
    return len(set(_top(first, k, "overlap@K")) & set(_top(second, k, "overlap@K"))) / k


# ---- user groups -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupStat:
    """One group's mean of a per-user metric with its bootstrap 95% interval."""

    group: str
    users: int
    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class GroupReport:
    """A per-user metric by the groups of one attribute, and the largest gap between two groups.

    ``gap`` is the best group's mean minus the worst's among groups of at least ``min_users`` users, with a
    bootstrap 95% interval (users resampled within each of the two groups). The pair is chosen on the point
    estimates, so the interval alone overstates the evidence; ``p_value`` corrects for that choice: a
    permutation test whose statistic is the largest gap itself (group labels shuffled among the compared
    users, the largest gap taken again each time). ``p_adjusted`` is the Holm-adjusted p-value over every gap
    tested for the same model (``holm_adjust``), filled in by the caller that knows that family.
    """

    attribute: str
    groups: list[GroupStat]
    best: str | None
    worst: str | None
    gap: float | None
    gap_low: float | None
    gap_high: float | None
    min_users: int
    skipped: list[str] = field(default_factory=list)
    p_value: float | None = None
    p_adjusted: float | None = None

    @property
    def gap_excludes_zero(self) -> bool:
        """Whether the gap's interval lies entirely above zero."""
        return self.gap_low is not None and self.gap_low > 0

    @property
    def significant(self) -> bool:
        """Whether the gap is significant at 5% after the Holm adjustment (the raw p-value when unadjusted)."""
        p = self.p_adjusted if self.p_adjusted is not None else self.p_value
        return p is not None and p < 0.05


def _bootstrap_means(values: np.ndarray, rng: np.random.Generator, rounds: int) -> np.ndarray:
    return values[rng.integers(0, len(values), (rounds, len(values)))].mean(axis=1)


def paired_difference(values: Sequence[float] | np.ndarray, reference: Sequence[float] | np.ndarray, *,
                      rounds: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values - reference`` (one pair per user) with a paired bootstrap 95% interval over users:
    what a change (a re-ranker, a mitigation) costs or adds against the list it changed, user by user."""
    a, b = np.asarray(values, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise RecllmError(f"a paired difference needs two equally long non-empty series, got {a.shape} and {b.shape}")
    diffs = a - b
    low, high = np.quantile(_bootstrap_means(diffs, np.random.default_rng(seed), rounds), [0.025, 0.975])
    return float(diffs.mean()), float(low), float(high)


def group_metric(values: np.ndarray, groups: Sequence[object], *, attribute: str, min_users: int = 20,
                 rounds: int = 2000, seed: int = 0) -> GroupReport:
    """Each group's mean of ``values`` (one per user) with a bootstrap 95% interval, and the largest gap.

    Users whose group is missing (None, NaN, empty) are left out and counted as the group ``(unknown)``
    in ``skipped``; groups smaller than ``min_users`` are listed but not compared.
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) != len(groups):
        raise RecllmError(f"{attribute}: {len(values)} metric values but {len(groups)} group labels")
    labels = np.asarray(["" if g is None or (isinstance(g, float) and np.isnan(g)) else str(g) for g in groups],
                        dtype=object)
    rng = np.random.default_rng(seed)
    stats: list[GroupStat] = []
    samples: dict[str, np.ndarray] = {}
    skipped = [f"(unknown): {int((labels == '').sum())} users"] if (labels == "").any() else []
    for name in sorted({str(x) for x in labels if x}):
        mine = values[labels == name]
        means = _bootstrap_means(mine, rng, rounds)
        low, high = np.quantile(means, [0.025, 0.975])
        stats.append(GroupStat(name, len(mine), float(mine.mean()), float(low), float(high)))
        if len(mine) >= min_users:
            samples[name] = means
        else:
            skipped.append(f"{name}: {len(mine)} users")
    if len(samples) < 2:
        return GroupReport(attribute, stats, None, None, None, None, None, min_users, skipped)
    compared = [s for s in stats if s.group in samples]
    best = max(compared, key=lambda s: s.mean)
    worst = min(compared, key=lambda s: s.mean)
    diffs = samples[best.group] - samples[worst.group]
    low, high = np.quantile(diffs, [0.025, 0.975])
    compared_mask = np.isin(labels, list(samples))
    p_value = largest_gap_p_value(values[compared_mask], labels[compared_mask], rounds=rounds, seed=seed)
    return GroupReport(attribute, stats, best.group, worst.group, best.mean - worst.mean, float(low), float(high),
                       min_users, skipped, p_value=p_value)


def largest_gap(reports: Mapping[str, GroupReport]) -> GroupReport | None:
    """Of reports by attribute, the one with the largest gap (None when no attribute has two groups to
    compare)."""
    found = [r for r in reports.values() if r.gap is not None]
    return max(found, key=lambda r: r.gap or 0.0) if found else None


def _largest_gaps(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """The largest minus the smallest group mean for each row of ``codes`` (rows: label assignments)."""
    rows = codes.shape[0]
    flat = codes + n_groups * np.arange(rows)[:, None]
    sums = np.bincount(flat.ravel(), weights=np.tile(values, rows), minlength=rows * n_groups)
    sizes = np.bincount(flat.ravel(), minlength=rows * n_groups)
    means = (sums / sizes).reshape(rows, n_groups)
    return means.max(axis=1) - means.min(axis=1)


def largest_gap_p_value(values: np.ndarray, labels: Sequence[object] | np.ndarray, *, rounds: int = 2000, seed: int = 0,
                        chunk: int = 250) -> float:
    """Permutation p-value of the largest gap between group means (max minus min over the groups of
    ``labels``): how often shuffled labels give a largest gap at least as big, ``(1 + hits) / (1 + rounds)``.

    The statistic is the maximum over all pairs, so choosing the best and worst group is part of the test.
    """
    values = np.asarray(values, dtype=np.float64)
    _, codes = np.unique(np.asarray([str(x) for x in labels]), return_inverse=True)
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    if n_groups < 2:
        raise RecllmError(f"a gap needs at least two groups, got {n_groups}")
    observed = _largest_gaps(values, codes[None, :], n_groups)[0]
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    while done < rounds:
        size = min(chunk, rounds - done)
        shuffled = rng.permuted(np.tile(codes, (size, 1)), axis=1)
        hits += int((_largest_gaps(values, shuffled, n_groups) >= observed - 1e-12).sum())
        done += size
    return (1 + hits) / (1 + rounds)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (same order as given): the i-th smallest is
    multiplied by (m - i), made non-decreasing along the sorted order and capped at 1. It controls the
    family-wise error rate under any dependence between the tests."""
    p = np.asarray(p_values, dtype=np.float64)
    if ((p < 0) | (p > 1) | np.isnan(p)).any():
        raise RecllmError(f"p-values must lie in [0, 1], got {p.tolist()}")
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m)))) if m else p
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()
