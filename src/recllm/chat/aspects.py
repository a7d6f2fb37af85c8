"""Decision support: how well one item matches one user, aspect by aspect, each with a score in [0, 1] and a
one-line reason built from the data (never from a language model), then an aggregate and pros and cons.

Aspects:
- ``genre``: how much of the user's recent history shares the item's genres;
- ``era``: how close the item's year is to the years the user usually watches;
- ``similar``: the strongest co-watching similarity (cosine over users) between the item and an item the
  user liked (rated 4+, or liked/watched when there are no ratings);
- ``collaborative``: where the retriever ranks the item among everything the user has not seen;
- ``popularity``: how widely the item is watched, with its mean rating (a pro when well known and well
  rated, a con when few people rated it low).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from recllm.data.bundle import DataBundle
from recllm.errors import RecllmError
from recllm.models.base import Recommender

WEIGHTS = {"genre": 0.2, "era": 0.1, "similar": 0.25, "collaborative": 0.35, "popularity": 0.1}
RECENT = 50
PRO, CON = 0.6, 0.3
PRIOR_RATINGS = 10
TIE = 0.02
"""Aspect scores closer than this count as a tie in a comparison."""


@dataclass(frozen=True)
class Aspect:
    """One aspect of the match: its name, a score in [0, 1] (higher: better match) and why."""

    name: str
    score: float
    reason: str
    weight: float


@dataclass(frozen=True)
class Comparison:
    """Items side by side: their reports, per aspect the items that match it best (empty: a tie among all),
    and the items with the best weighted score (empty: a tie)."""

    reports: tuple[DecisionReport, ...]
    leaders: tuple[tuple[str, tuple[str, ...]], ...]
    overall: tuple[str, ...]


@dataclass(frozen=True)
class DecisionReport:
    """Every aspect, their weighted mean, and the aspects that speak for (pros) and against (cons)."""

    item: str
    title: str
    aspects: tuple[Aspect, ...]
    score: float
    pros: tuple[str, ...]
    cons: tuple[str, ...]


class AspectAnalyzer:
    """Scores aspects of an item for a user history, from the dataset, the catalog and a fitted retriever."""

    def __init__(self, data: DataBundle, retriever: Recommender) -> None:
        if retriever.item_vocab is None or retriever.item_vocab != data.dataset.item_vocab:
            raise RecllmError("the retriever must be fitted on the same dataset as the aspects are computed from")
        self.data = data
        self.retriever = retriever
        self.retriever_name = type(retriever).__name__

    @cached_property
    def _columns(self) -> sp.csc_matrix:
        return self.data.dataset.matrix.tocsc()

    @cached_property
    def _popularity_percentile(self) -> np.ndarray:
        pop = self.data.dataset.item_popularity.astype(np.float64)
        order = pop.argsort(kind="stable").argsort(kind="stable")
        return order / max(len(pop) - 1, 1)

    @cached_property
    def _ratings(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean rating, shrunk mean rating) per item; the shrunk one pulls items with few ratings towards the
        global mean (``PRIOR_RATINGS`` pseudo-ratings), so two 5-star ratings do not make a masterpiece."""
        ds = self.data.dataset
        if ds.ratings is None:
            nan = np.full(ds.n_items, np.nan)
            return nan, nan
        sums = np.bincount(ds.items, weights=ds.ratings, minlength=ds.n_items)
        counts = np.bincount(ds.items, minlength=ds.n_items)
        overall = float(ds.ratings.mean())
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        return mean, (sums + PRIOR_RATINGS * overall) / (counts + PRIOR_RATINGS)

    def analyze(self, history: list[str], item: str, *, liked: list[str] | None = None,
                weights: Mapping[str, float] | None = None) -> DecisionReport:
        """The aspects of ``item`` for a user with ``history`` (item ids, oldest first); ``liked`` are the items
        the user liked (default: the whole history); ``weights`` replace the default aspect weights (the user's
        own criteria, ``recllm.chat.criteria``)."""
        catalog = self.data.catalog
        if item not in catalog:
            raise RecllmError(f"unknown item '{item}'")
        known = [h for h in history if h in catalog]
        liked = [h for h in (liked if liked is not None else known) if h in catalog]
        aspects: tuple[Aspect, ...] = (self._genre(known, item), self._era(known, item),
                                       self._similar(liked, item), self._collaborative(known, item),
                                       self._popularity(item))
        if weights is not None:
            unknown = set(weights) - set(WEIGHTS)
            if unknown or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
                raise RecllmError(f"aspect weights must be non-negative, not all zero, and name only "
                                  f"{', '.join(WEIGHTS)}; got {dict(weights)}")
            aspects = tuple(replace(a, weight=float(weights.get(a.name, a.weight))) for a in aspects)
        total = sum(a.weight for a in aspects)
        score = sum(a.score * a.weight for a in aspects) / total
        pros = tuple(a.reason for a in aspects if a.score >= PRO)
        cons = tuple(a.reason for a in aspects if a.score <= CON)
        return DecisionReport(item, catalog[item].label(), aspects, float(score), pros, cons)

    def compare(self, history: list[str], items: Sequence[str], *, liked: list[str] | None = None,
                weights: Mapping[str, float] | None = None) -> Comparison:
        """Two or three items side by side: each one's report, and per aspect which item matches best."""
        if not 2 <= len(items) <= 3 or len(set(items)) != len(items):
            raise RecllmError(f"compare two or three different items, got {list(items)}")
        reports = tuple(self.analyze(history, item, liked=liked, weights=weights) for item in items)
        leaders = []
        for index, aspect in enumerate(reports[0].aspects):
            scores = [r.aspects[index].score for r in reports]
            best = max(scores)
            winners = tuple(r.item for r, s in zip(reports, scores, strict=True) if s >= best - TIE)
            leaders.append((aspect.name, winners if len(winners) < len(reports) else ()))
        best_score = max(r.score for r in reports)
        overall = tuple(r.item for r in reports if r.score >= best_score - TIE)
        return Comparison(reports, tuple(leaders), overall if len(overall) < len(reports) else ())

    # ---- aspects -------------------------------------------------------------------------------------
    def _genre(self, history: list[str], item: str) -> Aspect:
        catalog = self.data.catalog
        genres = set(catalog[item].genres)
        recent = history[-RECENT:]
        if not genres or not recent:
            return Aspect("genre", 0.5, "no genres to compare" if not genres else "no history to compare genres with",
                          WEIGHTS["genre"])
        sharing = [h for h in recent if genres & set(catalog[h].genres)]
        counts = Counter(g for h in recent for g in catalog[h].genres if g in genres)
        share = len(sharing) / len(recent)
        named = ", ".join(f"{g} ({counts[g]})" for g in sorted(genres, key=lambda g: (-counts[g], g)) if counts[g])
        scope = "your only movie shares" if len(recent) == 1 else \
            f"{len(sharing)} of your {len(recent)} most recent movies share"
        if len(recent) == 1 and not sharing:
            scope = "your only movie shares none of"
        return Aspect("genre", share, f"{scope} its genres{': ' + named if named else ''}", WEIGHTS["genre"])

    def _era(self, history: list[str], item: str) -> Aspect:
        catalog = self.data.catalog
        year = catalog[item].year
        years = [y for h in history if (y := catalog[h].year) is not None]
        if year is None or not years:
            return Aspect("era", 0.5, "no year to compare" if year is None else "no dated movies in your history",
                          WEIGHTS["era"])
        lo, median, hi = (int(v) for v in np.percentile(years, [25, 50, 75]))
        distance = 0 if lo <= year <= hi else min(abs(year - lo), abs(year - hi))
        score = float(np.exp(-distance / 10.0))
        usual = f"you watched movies from {lo}" if lo == hi else \
            f"half of the movies you watched are from {lo}-{hi} (median {median})"
        return Aspect("era", score, f"from {year}; {usual}", WEIGHTS["era"])

    def closest_liked(self, liked: list[str], item: str) -> tuple[str, float] | None:
        """The liked item most co-watched with ``item`` (cosine over users) and that similarity; None when
        nothing liked is in the data."""
        vocab = self.data.dataset.item_vocab
        usable = [h for h in dict.fromkeys(liked) if h in vocab and h != item]
        if item not in vocab or not usable:
            return None
        columns = self._columns
        target = columns[:, vocab.index(item)]
        indices = vocab.indices(usable)
        overlap = np.asarray((columns[:, indices].T @ target).todense()).ravel()
        sizes = np.asarray(columns[:, indices].sum(axis=0)).ravel() * max(float(target.sum()), 1.0)
        cosine = overlap / np.sqrt(np.maximum(sizes, 1.0))
        best = int(np.argmax(cosine))
        return usable[best], float(cosine[best])

    def _similar(self, liked: list[str], item: str) -> Aspect:
        closest = self.closest_liked(liked, item)
        if closest is None:
            return Aspect("similar", 0.0, "nothing you liked to compare with", WEIGHTS["similar"])
        other, similarity = closest
        label = self.data.catalog[other].label()
        if similarity >= CON:
            reason = (f"people who watched {label}, which you liked, also watched this one (co-watching "
                      f"similarity {similarity:.2f})")
        else:
            reason = (f"seldom watched by the people who watched what you liked (closest: {label}, co-watching "
                      f"similarity {similarity:.2f})")
        return Aspect("similar", similarity, reason, WEIGHTS["similar"])

    def _collaborative(self, history: list[str], item: str) -> Aspect:
        vocab = self.data.dataset.item_vocab
        if item not in vocab:
            return Aspect("collaborative", 0.0, f"{self.retriever_name} has no data on this item",
                          WEIGHTS["collaborative"])
        seen = vocab.indices([h for h in history if h in vocab])
        scores = self.retriever.score(np.array([-1]), [seen])[0].astype(np.float64)
        unseen = np.ones(len(scores), dtype=bool)
        unseen[seen] = False
        index = vocab.index(item)
        unseen[index] = True
        pool = scores[unseen]
        rank = int((pool > scores[index]).sum()) + 1
        score = 1.0 - (rank - 1) / max(len(pool) - 1, 1)
        share = 100.0 * rank / len(pool)
        where = f"top {max(share, 1.0):.0f}%" if share <= 50 else \
            f"bottom {max(100.0 - share + 100.0 / len(pool), 1.0):.0f}%"
        return Aspect("collaborative", score, f"{self.retriever_name} ranks it {rank:,} of the {len(pool):,} movies "
                      f"you have not seen ({where})", WEIGHTS["collaborative"])

    def _popularity(self, item: str) -> Aspect:
        vocab = self.data.dataset.item_vocab
        if item not in vocab:
            return Aspect("popularity", 0.0, "no one in the data has watched it", WEIGHTS["popularity"])
        index = vocab.index(item)
        users = int(self.data.dataset.item_popularity[index])
        share = float(self._popularity_percentile[index])
        mean, shrunk = (values[index] for values in self._ratings)
        rated = "" if np.isnan(mean) else f", mean rating {mean:.2f}"
        kind = "well known" if share >= 0.8 else "little known" if share <= 0.3 else "moderately known"
        score = share if np.isnan(mean) else 0.5 * share + 0.5 * float(np.clip((shrunk - 1.0) / 4.0, 0.0, 1.0))
        return Aspect("popularity", score, f"{kind}: watched by {users:,} of {self.data.dataset.n_users:,} users"
                      f"{rated}", WEIGHTS["popularity"])
