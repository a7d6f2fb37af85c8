"""Prompt robustness of LLM rankers (issue 17): paraphrased templates are valid and differ from the original in
their instructions only, and ``llm_robustness`` measures exactly how far a ranking moves under each condition
(re-ranker doubles whose answers depend on the wording or on the history's order)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from tests.fakes import ScriptedLLM

from recllm.data.itemlist import ItemList
from recllm.errors import RecllmError
from recllm.eval.llm_robustness import PARAPHRASES, llm_robustness, paraphrased_template, robustness_rows
from recllm.prompts.builder import PromptBuilder
from recllm.prompts.templates import load_template
from recllm.rerank.base import Attempt, LLMReranker, Reranker

CANDIDATES = ItemList(tuple("abcdefgh"), np.linspace(8, 1, 8))
HISTORY = ["h1", "h2", "h3", "h4", "h5"]


@pytest.mark.parametrize("task", sorted(PARAPHRASES))
def test_paraphrases_reword_the_instructions_and_keep_the_item_lines(task: str, ml100k):
    original = load_template(task)
    for index in range(2):
        paraphrase = paraphrased_template(task, index)
        assert paraphrase.parts["task"] != original.parts["task"]
        assert paraphrase.parts["item_line"] == original.parts["item_line"]
        builder = PromptBuilder(ml100k.catalog, task, template=paraphrase)
        prompt = builder.build(["1", "2", "3", "4", "5"], candidates=["50", "100"])
        assert "Toy Story (1995)" in prompt.text and "{" not in prompt.text
    with pytest.raises(RecllmError, match="no paraphrase 3"):
        paraphrased_template("rank-verbalizer", 2)


class _Ordered(LLMReranker):
    """Ranks by the candidates' own scores, reversed when ``reverse``; with ``by_history`` the first candidate
    moves to the end when the history does not start with its oldest item."""

    def __init__(self, reverse: bool = False, by_history: bool = False) -> None:
        super().__init__(ScriptedLLM([]))
        self.reverse, self.by_history = reverse, by_history

    @property
    def name(self) -> str:
        return "ordered"

    def _attempt(self, history: list[str], candidates: ItemList, user: object | None) -> Attempt:
        order = list(candidates.items)[::-1] if self.reverse else list(candidates.items)
        if self.by_history and history[0] != "h1":
            order = order[1:] + order[:1]
        scores = {item: float(len(order) - i) for i, item in enumerate(order)}
        return Attempt(proposed=tuple(order), scores=scores)


def test_a_wording_dependent_ranker_scores_low_and_an_order_dependent_one_moves_with_the_history():
    made: list[Mapping[str, Any]] = []

    def make(prompt_options: Mapping[str, Any]) -> Reranker:
        made.append(prompt_options)
        return _Ordered(reverse=bool(prompt_options), by_history=True)

    lists: Sequence[tuple[str, Sequence[str], ItemList]] = [("u1", HISTORY, CANDIDATES), ("u2", HISTORY, CANDIDATES)]
    report = llm_robustness(make, "rank-verbalizer", lists, k=4, seed=3)
    assert [m.get("template").source for m in made[1:]] == [  # type: ignore[union-attr]
        "paraphrase 1 of rank-verbalizer.zero-shot", "paraphrase 2 of rank-verbalizer.zero-shot"]
    by = {c.condition: c for c in report.conditions}
    assert by["paraphrase 1"].kendall_tau == pytest.approx(-1.0) and by["paraphrase 1"].overlap == 0.0
    assert by["paraphrase 2"].kendall_tau == pytest.approx(-1.0)
    # a shuffled history (seeded: not starting with h1 here) moves the first candidate to the end
    shuffled = by["shuffled history"]
    assert shuffled.kendall_tau == pytest.approx(1 - 2 * 7 / 28) and shuffled.overlap == 0.75
    assert report.users == 2 and report.k == 4
    assert robustness_rows(report)[0] == ["paraphrase 1", "-1.000", "0.000", "2"]


def test_a_robust_ranker_agrees_everywhere_and_bad_input_is_named():
    report = llm_robustness(lambda options: _Ordered(), "rank-likelihood", [("u", HISTORY, CANDIDATES)], k=5)
    assert all(c.kendall_tau == pytest.approx(1.0) and c.overlap == 1.0 for c in report.conditions)
    with pytest.raises(RecllmError, match="at least one user"):
        llm_robustness(lambda options: _Ordered(), "rank-likelihood", [])
    with pytest.raises(RecllmError, match="no paraphrase"):
        llm_robustness(lambda options: _Ordered(), "rating", [("u", HISTORY, CANDIDATES)])
