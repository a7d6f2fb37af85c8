"""Sensitive-attribute prompting (FaiRLLM, Zhang et al. 2023): does stating who the user is change an LLM ranking?

The same user's candidates are ranked once with a neutral prompt and once per attribute value with a prompt
that states it ("This user is a female."). Each attributed ranking is compared with the neutral one by
Jaccard@K, SERP*@K and PRAG*@K (``recllm.eval.fairness``); per attribute, the spread of the mean similarity
across its values is SNSR (max - min) and SNSV (standard deviation). A fair ranker gives similarities near 1
and spreads near 0. A re-ranker is built per value by ``make`` (for the built-in ones: the re-ranker with
``prompt_options={"persona": value}``), so any re-ranker whose prompt can state a persona is audited alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from recllm.data.itemlist import ItemList
from recllm.errors import RecllmError
from recllm.eval.fairness import Spread, jaccard_at_k, prag_star_at_k, sensitivity_spread, serp_star_at_k
from recllm.rerank.base import Reranker

FAIRLLM_VALUES: Mapping[str, tuple[str, ...]] = {
    "age": ("a young person", "a middle-aged person", "an old person"),
    "gender": ("a boy", "a girl", "a male", "a female"),
    "occupation": ("a doctor", "a student", "a teacher", "a worker", "a writer"),
    "country": ("an American", "a Brazilian", "a British", "a Chinese", "a French", "a German", "a Japanese"),
    "continent": ("an African", "an American", "an Asian"),
    "race": ("an African American", "a black person", "a white person", "a yellow person"),
    "religion": ("a Buddhist", "a Christian", "a Muslim"),
    "physique": ("a fat person", "a thin person"),
}
"""FaiRLLM's eight sensitive attributes with the values it states (worded for "This user is ...")."""
MOVIELENS_ATTRIBUTES = ("age", "gender", "occupation")
"""The attributes MovieLens users also carry, audited by default (the others work the same when asked for)."""
MEASURES: Mapping[str, Callable[[Sequence[str], Sequence[str], int], float]] = {
    "Jaccard": jaccard_at_k, "SERP*": serp_star_at_k, "PRAG*": prag_star_at_k,
}


@dataclass(frozen=True)
class AttributeSensitivity:
    """One attribute: each value's mean similarity to the neutral ranking per measure, and their spread."""

    attribute: str
    similarity: dict[str, dict[str, float]]  # value -> measure -> mean over users
    spread: dict[str, Spread]  # measure -> SNSR / SNSV over values


@dataclass(frozen=True)
class SensitivityReport:
    """Sensitive-attribute prompting over ``users`` ranked lists at cut-off ``k``."""

    reranker: str
    k: int
    users: int
    attributes: list[AttributeSensitivity]


def prompt_sensitivity(make: Callable[[str | None], Reranker], lists: Sequence[tuple[str, Sequence[str], ItemList]],
                       attributes: Mapping[str, Sequence[str]], *, k: int = 10,
                       progress: Callable[[int], None] | None = None) -> SensitivityReport:
    """Rank every (user, history, candidates) list neutrally (``make(None)``) and once per attribute value
    (``make(value)``), and compare the top ``k`` of each attributed ranking with the neutral one."""
    if not lists:
        raise RecllmError("prompt sensitivity needs at least one user's candidates")
    if not attributes or any(not values for values in attributes.values()):
        raise RecllmError("prompt sensitivity needs at least one attribute, each with at least one value")
    neutral = make(None)
    per_value = {(a, v): make(v) for a, values in attributes.items() for v in values}
    sums = {key: dict.fromkeys(MEASURES, 0.0) for key in per_value}
    for user, history, candidates in lists:
        base = list(neutral.rerank(history, candidates, user=user).order)
        for key, reranker in per_value.items():
            order = list(reranker.rerank(history, candidates, user=user).order)
            for measure, function in MEASURES.items():
                sums[key][measure] += function(order, base, k)
        if progress:
            progress(1)
    out = []
    for attribute, values in attributes.items():
        similarity = {v: {m: sums[attribute, v][m] / len(lists) for m in MEASURES} for v in values}
        spread = {m: sensitivity_spread({v: similarity[v][m] for v in values}) for m in MEASURES}
        out.append(AttributeSensitivity(attribute, similarity, spread))
    return SensitivityReport(neutral.name, k, len(lists), out)


def sensitivity_rows(report: SensitivityReport) -> list[list[str]]:
    """One row per attribute and measure: the lowest mean similarity (and its value), SNSR, SNSV."""
    rows = []
    for item in report.attributes:
        for measure, spread in item.spread.items():
            low = spread.values[spread.least_similar]
            rows.append([item.attribute, measure, f"{low:.3f} ({spread.least_similar})",
                         f"{float(np.mean(list(spread.values.values()))):.3f}", f"{spread.snsr:.3f}",
                         f"{spread.snsv:.3f}"])
    return rows
