"""Robustness of an LLM ranking to how the prompt is worded and how the history is ordered (issue 17).

An LLM re-ranker should rank a user's candidates the same way whether the instructions say "Choose the movie
... most likely watch next" or "Which of these movies ... pick next", and whether the history it is shown is
listed in the order the user watched it or shuffled (a ranker that leans on the last lines it read, rather than
on the items, moves when the order moves). For every user's candidate list the re-ranker ranks once as
configured (the reference), then under each condition:

- ``paraphrase 1``, ``paraphrase 2``: the built-in template with its instructions reworded (``PARAPHRASES``:
  the system line, the task, the history and candidate headers, the output instruction and, for likelihood
  ranking, the answer prefix), so with the original there are three wordings of each template;
- ``shuffled history``: the same prompt with the history's items in a seeded random order.

Agreement with the reference: Kendall's tau of the candidates' scores and overlap@K of the two top-K lists,
averaged over users. A robust ranker scores near 1 on both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recllm.data.itemlist import ItemList
from recllm.errors import RecllmError
from recllm.eval.fairness import kendall_tau, overlap_at_k
from recllm.prompts.templates import Template, load_template, parse_template
from recllm.rerank.base import Reranker

PARAPHRASES: Mapping[str, tuple[Mapping[str, str], Mapping[str, str]]] = {
    "rank-verbalizer": (
        {"system": "You recommend {nouns}. From the {nouns} a person has seen, you pick the one they will like "
                   "best.",
         "task": "Which of the candidate {nouns} below is this person most likely to watch next?",
         "history_header": "{nouns} this person has seen ({order}):",
         "candidates_header": "Candidate {nouns}:",
         "output_format": "Reply with one label from {first_label} to {last_label}, nothing more."},
        {"system": "Act as a recommender of {nouns} that learns a viewer's taste from their past {nouns}.",
         "task": "Pick the candidate {noun} this viewer would watch next.",
         "history_header": "Viewing history, {order}:",
         "candidates_header": "Options:",
         "output_format": "Give only the label ({first_label}-{last_label}) of the option you pick."}),
    "rank-likelihood": (
        {"system": "You recommend {nouns}. From the {nouns} a person has seen, you guess the next one they "
                   "will watch.",
         "task": "Guess the {noun} this person watches next.",
         "history_header": "{nouns} this person has seen ({order}):",
         "output_format": "Reply with the title and year of that {noun}, nothing more.",
         "answer_prefix": "The next {noun} they watch:"},
        {"system": "Act as a recommender of {nouns} that learns a viewer's taste from their past {nouns}.",
         "task": "What will this viewer watch next?",
         "history_header": "Viewing history, {order}:",
         "output_format": "Give only the title and year.",
         "answer_prefix": "Next up:"}),
    "rank-listwise": (
        {"system": "You recommend {nouns}. From the {nouns} a person has seen, you order candidate {nouns} by "
                   "how much they will like them.",
         "task": "Order the {n_candidates} candidate {nouns} below from the one this person is most likely to "
                 "watch next to the least likely.",
         "history_header": "{nouns} this person has seen ({order}):",
         "candidates_header": "Candidate {nouns}:",
         "output_format": "Reply with the numbers of the best {k} candidates, best first, one per line, nothing "
                          "more."},
        {"system": "Act as a recommender of {nouns} that learns a viewer's taste from their past {nouns}.",
         "task": "Rank these {n_candidates} options for this viewer, most likely next watch first.",
         "history_header": "Viewing history, {order}:",
         "candidates_header": "Options:",
         "output_format": "Give only the numbers of your top {k} options, one per line, best first."}),
}
"""Two rewordings of the instructions of each ranking template (zero-shot), the item lines left as they are."""
CONDITIONS = ("paraphrase 1", "paraphrase 2", "shuffled history")


def paraphrased_template(task: str, index: int, variant: str = "zero-shot") -> Template:
    """The built-in ``task`` template with the instructions of ``PARAPHRASES[task][index]``, validated like a
    template file."""
    if task not in PARAPHRASES or not 0 <= index < len(PARAPHRASES[task]):
        raise RecllmError(f"no paraphrase {index + 1} of the '{task}' template; paraphrased tasks: "
                          f"{', '.join(PARAPHRASES)}")
    base = load_template(task, variant)
    meta: dict[str, Any] = {"task": base.task, "variant": base.variant, "output": base.output,
                            "description": base.description, "answer_tokens": base.answer_tokens,
                            "answer_tokens_per_candidate": base.answer_tokens_per_candidate}
    parts = {**dict(base.parts), **PARAPHRASES[task][index]}
    formats = {name: text for name, text in base.output_formats.items() if name != base.output}
    return parse_template({"template": meta, "parts": parts, "output_formats": formats},
                          source=f"paraphrase {index + 1} of {task}.{variant}")


@dataclass(frozen=True)
class RobustnessCondition:
    """Agreement with the reference ranking under one condition, averaged over users."""

    condition: str
    kendall_tau: float
    overlap: float
    users: int


@dataclass(frozen=True)
class LLMRobustnessReport:
    """Robustness of one LLM re-ranker over ``users`` lists at cut-off ``k``."""

    reranker: str
    k: int
    users: int
    conditions: list[RobustnessCondition]


def llm_robustness(make: Callable[[Mapping[str, Any]], Reranker], task: str,
                   lists: Sequence[tuple[str, Sequence[str], ItemList]], *, k: int = 10, seed: int = 0,
                   progress: Callable[[int], None] | None = None) -> LLMRobustnessReport:
    """Rank every (user, history, candidates) list with ``make({})`` and under each of ``CONDITIONS``;
    ``make(prompt_options)`` builds the re-ranker with those prompt options (a paraphrased ``template``)."""
    if not lists:
        raise RecllmError("LLM robustness needs at least one user's candidates")
    reference = make({})
    variants = {f"paraphrase {i + 1}": make({"template": paraphrased_template(task, i)})
                for i in range(len(PARAPHRASES.get(task, ())))}
    if not variants:
        raise RecllmError(f"no paraphrases of the '{task}' template; paraphrased tasks: {', '.join(PARAPHRASES)}")
    rng = np.random.default_rng(seed)
    taus: dict[str, list[float]] = {c: [] for c in [*variants, "shuffled history"]}
    overlaps: dict[str, list[float]] = {c: [] for c in taus}
    for user, history, candidates in lists:
        base = reference.rerank(history, candidates, user=user).items
        shuffled = [history[i] for i in rng.permutation(len(history))]
        runs = {name: reranker.rerank(history, candidates, user=user).items for name, reranker in variants.items()}
        runs["shuffled history"] = reference.rerank(shuffled, candidates, user=user).items
        for name, ranked in runs.items():
            taus[name].append(_tau(base, ranked))
            overlaps[name].append(overlap_at_k(list(ranked.items), list(base.items), k))
        if progress:
            progress(1)
    conditions = [RobustnessCondition(name, float(np.mean(taus[name])), float(np.mean(overlaps[name])), len(lists))
                  for name in taus]
    return LLMRobustnessReport(reference.name, k, len(lists), conditions)


def _tau(a: ItemList, b: ItemList) -> float:
    """Kendall's tau of two rankings' scores over the same candidates (aligned by item)."""
    by_item = dict(zip(b.items, b.scores, strict=True))
    return kendall_tau([float(v) for v in a.scores], [float(by_item[i]) for i in a.items])


def robustness_rows(report: LLMRobustnessReport) -> list[list[str]]:
    """One row per condition: Kendall's tau and overlap@K with the reference ranking."""
    return [[c.condition, f"{c.kendall_tau:.3f}", f"{c.overlap:.3f}", str(c.users)] for c in report.conditions]
