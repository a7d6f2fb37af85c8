"""Bias mitigation of a final list, by item popularity: both re-order a ranked candidate list without a model.

- ``calibrate_popularity`` (Steck's calibrated recommendations, 2018, over popularity bins as Abdollahpouri
  et al. 2021 do): picks items one at a time, trading relevance against how far the list's mix of head, mid
  and tail items is from the mix of the user's own history (Kullback-Leibler divergence).
- ``tail_quota`` (a deterministic FA*IR-style constraint): every prefix of the list holds at least ``share``
  long-tail items, when the candidates have them; otherwise the order is the retriever's.
- ``popularity_penalty``: relevance traded against each item's popularity percentile, one weight for all
  users; ``recllm audit`` chooses the weight on validation users so that the items put first are as popular
  as what users go on to pick, the one target a per-user history calibration misses (users' histories lean
  to the head more than their next items do).

Bins come from ``PopularityBins``: head = the 20% of items with the most training interactions, mid = the
next 30%, tail = the rest (the long tail of ``recllm.eval.fairness.long_tail_share`` is mid + tail).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from recllm.data.itemlist import ItemList
from recllm.errors import ConfigError

BIN_NAMES = ("head", "mid", "tail")
MITIGATIONS = ("popularity-calibration", "tail-quota", "popularity-penalty")
"""The mitigations by name, as configured in a pipeline and measured by ``recllm audit``."""


class PopularityBins:
    """Each item's popularity bin (0 head, 1 mid, 2 tail) from its training interaction count; an item not in
    ``counts`` (new) is tail. Ties at a border go to the more popular bin."""

    def __init__(self, counts: Mapping[str, float], *, head: float = 0.2, mid: float = 0.3) -> None:
        if not counts:
            raise ConfigError("popularity bins need the training interaction count of at least one item")
        if head <= 0 or mid < 0 or head + mid >= 1:
            raise ConfigError(f"head and mid shares must be positive and leave room for a tail, got {head}, {mid}")
        values = np.sort(np.asarray(list(counts.values()), dtype=np.float64))[::-1]
        n = len(values)
        self.head_min = values[max(int(np.ceil(head * n)) - 1, 0)]
        self.mid_min = values[max(int(np.ceil((head + mid) * n)) - 1, 0)]
        self.counts = {str(k): float(v) for k, v in counts.items()}
        ascending = values[::-1]
        below = np.searchsorted(ascending, ascending, side="left")
        up_to = np.searchsorted(ascending, ascending, side="right")
        by_count = dict(zip(ascending.tolist(), (100.0 * (below + up_to - 1) / 2 / max(n - 1, 1)).tolist(),
                            strict=True))
        self._percentiles = {item: by_count[count] if n > 1 else 100.0 for item, count in self.counts.items()}

    def percentile(self, item: str) -> float:
        """The item's training count as a percentile among all items (100: the most popular; ties share their
        mean rank, as ``recllm.eval.audit.popularity_percentiles``); 0 for an item not in ``counts``."""
        return self._percentiles.get(str(item), 0.0)

    def of(self, item: str) -> int:
        count = self.counts.get(str(item))
        if count is None:
            return 2
        return 0 if count >= self.head_min else 1 if count >= self.mid_min else 2

    def mix(self, items: Sequence[str]) -> np.ndarray:
        """Share of ``items`` in each bin (zeros for no items)."""
        counts = np.bincount([self.of(i) for i in items], minlength=3).astype(np.float64)
        return counts / counts.sum() if counts.sum() else counts


def _relevance(candidates: ItemList) -> np.ndarray:
    """Scores scaled to 0..1 within the list (all 1 when they are equal or not all finite)."""
    scores = np.asarray(candidates.scores, dtype=np.float64)
    if not np.isfinite(scores).all() or np.ptp(scores) == 0:
        return np.ones(len(candidates.items))
    return (scores - scores.min()) / np.ptp(scores)


def _kl(target: np.ndarray, mix: np.ndarray, alpha: float = 0.01) -> float:
    """KL(target || mix smoothed towards target), as Steck smooths, so an empty bin costs finitely."""
    q = (1 - alpha) * mix + alpha * target
    mask = target > 0
    return float(np.sum(target[mask] * np.log(target[mask] / q[mask])))


def calibrate_popularity(candidates: ItemList, history: Sequence[str], bins: PopularityBins, *, k: int,
                         weight: float = 0.5) -> ItemList:
    """The top ``k`` of ``candidates`` (best first, with scores) chosen greedily by
    (1 - weight) * relevance - weight * KL(history mix || list mix); ``weight`` 0 keeps the retriever's order.
    Returned scores are k, k-1, ..., 1 (the new order). A user without history keeps the retriever's order."""
    if not 0 <= weight <= 1:
        raise ConfigError(f"calibration weight must be between 0 and 1, got {weight}")
    items = list(candidates.items)
    k = min(k, len(items))
    target = bins.mix(history)
    if weight == 0 or not target.sum():
        return ItemList(tuple(items[:k]), np.arange(k, 0, -1, dtype=np.float64))
    relevance = _relevance(candidates)
    of = np.asarray([bins.of(i) for i in items])
    counts = np.zeros(3)
    chosen: list[int] = []
    left = list(range(len(items)))
    while len(chosen) < k:
        best, best_value = left[0], -np.inf
        for index in left:
            counts[of[index]] += 1
            value = (1 - weight) * relevance[index] - weight * _kl(target, counts / counts.sum())
            counts[of[index]] -= 1
            if value > best_value:  # strict: ties keep the retriever's order
                best, best_value = index, value
        chosen.append(best)
        counts[of[best]] += 1
        left.remove(best)
    return ItemList(tuple(items[i] for i in chosen), np.arange(k, 0, -1, dtype=np.float64))


def tail_quota(candidates: ItemList, bins: PopularityBins, *, k: int, share: float = 0.3) -> ItemList:
    """The top ``k`` in the retriever's order, except that every prefix of length j holds at least
    floor(share * j) long-tail (mid or tail) items while candidates of that kind remain."""
    if not 0 <= share <= 1:
        raise ConfigError(f"the tail share must be between 0 and 1, got {share}")
    items = list(candidates.items)
    k = min(k, len(items))
    tail = [i for i in items if bins.of(i) > 0]
    head = [i for i in items if bins.of(i) == 0]
    out: list[str] = []
    n_tail = 0
    while len(out) < k:
        need = int(np.floor(share * (len(out) + 1) + 1e-9))
        if tail and (n_tail < need or not head or items.index(tail[0]) < items.index(head[0])):
            out.append(tail.pop(0))
            n_tail += 1
        else:
            out.append(head.pop(0))
    return ItemList(tuple(out), np.arange(k, 0, -1, dtype=np.float64))


def popularity_penalty(candidates: ItemList, bins: PopularityBins, *, k: int, weight: float = 0.3) -> ItemList:
    """The top ``k`` of ``candidates`` by (1 - weight) * relevance - weight * popularity percentile / 100
    (relevance: the scores scaled to 0..1 within the list); ``weight`` 0 keeps the retriever's order, ties too.
    Returned scores are k, k-1, ..., 1 (the new order)."""
    items = list(candidates.items)
    k = min(k, len(items))
    [value] = _penalised_values(candidates, bins, [weight])
    order = np.argsort(-value, kind="stable")[:k]
    return ItemList(tuple(items[i] for i in order), np.arange(k, 0, -1, dtype=np.float64))


def first_under_penalties(candidates: ItemList, bins: PopularityBins, weights: Sequence[float]) -> list[str]:
    """The item ``popularity_penalty`` puts first at each of ``weights``, from one pass over the candidates
    (relevance and percentiles computed once), for a search over the weight."""
    if not len(candidates.items):
        raise ConfigError("the popularity penalty needs at least one candidate")
    best = np.argmax(_penalised_values(candidates, bins, weights), axis=1)  # the first maximum, as a stable sort
    return [candidates.items[i] for i in best]


def _penalised_values(candidates: ItemList, bins: PopularityBins, weights: Sequence[float]) -> np.ndarray:
    """(1 - w) * relevance - w * popularity percentile / 100 of every candidate, one row per weight w."""
    w = np.asarray(weights, dtype=np.float64)
    if ((w < 0) | (w > 1)).any():
        bad = next(x for x in weights if not 0 <= x <= 1)
        raise ConfigError(f"the popularity penalty weight must be between 0 and 1, got {bad}")
    popularity = np.asarray([bins.percentile(i) for i in candidates.items]) / 100
    return (1 - w)[:, None] * _relevance(candidates)[None, :] - w[:, None] * popularity[None, :]


def mitigate(name: str, candidates: ItemList, history: Sequence[str], bins: PopularityBins, *, k: int,
             weight: float, share: float) -> ItemList:
    """The top ``k`` of ``candidates`` after mitigation ``name``: ``weight`` is the calibration's or the
    penalty's, ``share`` the tail quota's (each uses only its own)."""
    if name == "popularity-calibration":
        return calibrate_popularity(candidates, history, bins, k=k, weight=weight)
    if name == "tail-quota":
        return tail_quota(candidates, bins, k=k, share=share)
    if name == "popularity-penalty":
        return popularity_penalty(candidates, bins, k=k, weight=weight)
    raise ConfigError(f"unknown mitigation '{name}'; known: {', '.join(MITIGATIONS)}")
