"""Token budgets: history is trimmed from the oldest side, then demonstrations; the result fits, as counted by
the real SmolLM2 tokenizer through its chat template."""

from __future__ import annotations

import pytest

from recllm.data import Dataset, ItemCatalog
from recllm.llm import LLM
from recllm.prompts import PromptBuilder, PromptError
from recllm.prompts.builder import DEFAULT_MAX_HISTORY

HISTORY = [(f"m{i}", float(1 + i % 5)) for i in range(1, 51)]  # 50 items, oldest first


def test_counts_tokens_as_the_model_reads_them(catalog: ItemCatalog, llm: LLM) -> None:
    prompt = PromptBuilder(catalog, "rank-listwise", llm=llm, max_tokens=100_000, max_history=None).build(
        HISTORY, candidates=["m51", "m52"])
    assert prompt.n_tokens == llm.count_tokens(prompt.render(llm))
    assert prompt.render(llm).startswith("<|im_start|>system\n")
    assert prompt.counted_by == f"hf:{llm.model_name}"
    assert not prompt.trim.trimmed and prompt.trim.history_kept == 50


def test_budget_trims_oldest_history_first_and_fits(catalog: ItemCatalog, llm: LLM) -> None:
    budget = 700
    builder = PromptBuilder(catalog, "rank-likelihood", llm=llm, max_tokens=budget, max_history=None)
    full = PromptBuilder(catalog, "rank-likelihood", llm=llm, max_history=None).build(HISTORY,
                                                                                       candidates=["m55", "m56"])
    assert full.n_tokens > budget  # about 1,500 tokens with the whole history
    prompt = builder.build(HISTORY, candidates=["m55", "m56"])
    trim = prompt.trim
    kept = trim.history_kept
    assert 5 <= kept < 50 and trim.history_dropped == 50 - kept
    assert prompt.history == tuple(item for item, _ in HISTORY[-kept:])  # the newest items survive
    assert prompt.n_tokens == llm.count_tokens(prompt.render(llm))
    # the reserve covers the longest continuation, and the prompt plus reserve fits
    assert trim.reserve >= max(llm.count_tokens(c) for c in prompt.continuations)
    assert prompt.n_tokens + trim.reserve <= budget
    # as much history as fits: one more item would not
    bigger = PromptBuilder(catalog, "rank-likelihood", llm=llm, max_history=None).build(HISTORY[-(kept + 1):],
                                                                          candidates=["m55", "m56"])
    assert bigger.n_tokens + trim.reserve > budget
    # the task description and the output format are never cut
    assert prompt.messages[-1]["content"].startswith("Predict the next movie this user will watch.")
    assert prompt.render(llm).endswith("Answer with the title and year of the next movie only.<|im_end|>\n"
                                          "<|im_start|>assistant\nNext movie:")


def test_demonstrations_go_after_history_reaches_its_floor(catalog: ItemCatalog, train: Dataset) -> None:
    """With a character counter: first the history shrinks to min_history, then demonstrations are dropped."""
    history = HISTORY[:20]

    def build(max_tokens: int | None, n_shots: int, items: list[tuple[str, float]]) -> object:
        return PromptBuilder(catalog, "next-item", "few-shot", train=train, counter=len, max_tokens=max_tokens,
                             n_shots=n_shots, min_history=3, reserve=0).build(items, user="alice")

    floor_alone = build(None, 0, history[-3:]).n_tokens
    floor_with_one_demo = build(None, 1, history[-3:]).n_tokens
    # room for 3 items and one demonstration, not two: history trimmed to 3, one demonstration dropped
    prompt = build(floor_with_one_demo + 5, 2, history)
    assert (prompt.trim.history_kept, prompt.trim.demonstrations_kept) == (3, 1)
    assert prompt.demonstration_users == ("bob",)  # the least similar one went
    assert prompt.n_tokens <= floor_with_one_demo + 5
    # room for the floor alone: both demonstrations dropped, still 3 items
    prompt = build(floor_alone + 5, 2, history)
    assert (prompt.trim.history_kept, prompt.trim.demonstrations_kept) == (3, 0)
    assert prompt.trim.as_dict()["demonstrations_dropped"] == 2 and prompt.trim.history_dropped == 17
    # plenty of room: nothing dropped
    assert not build(100_000, 2, history).trim.trimmed


def test_an_impossible_budget_is_a_clear_error(catalog: ItemCatalog, llm: LLM) -> None:
    with pytest.raises(PromptError, match=r"needs \d+ tokens .* more than the budget of 50"):
        PromptBuilder(catalog, "rank-verbalizer", llm=llm, max_tokens=50).build(HISTORY, candidates=["m51"])


def test_measured_token_counts_for_a_50_item_history(catalog: ItemCatalog, llm: LLM) -> None:
    """The figures the report quotes: 50 items of history before and after a 1,024-token budget."""
    candidates = [f"m{i}" for i in range(51, 61)]
    for task in ("rank-likelihood", "rank-verbalizer", "rank-listwise"):
        before = PromptBuilder(catalog, task, llm=llm, max_history=None).build(HISTORY, candidates=candidates)
        after = PromptBuilder(catalog, task, llm=llm, max_tokens=1024, max_history=None).build(
            HISTORY, candidates=candidates)
        assert before.trim.history_kept == 50 and before.n_tokens > 1024
        assert after.n_tokens + after.trim.reserve <= 1024 < before.n_tokens
        assert after.trim.history_dropped > 0


def test_history_is_the_newest_twenty_by_default(catalog: ItemCatalog) -> None:
    prompt = PromptBuilder(catalog, "rank-likelihood", counter=len).build(HISTORY, candidates=["m51"])
    assert prompt.trim.history_total == len(HISTORY) and prompt.trim.history_kept == DEFAULT_MAX_HISTORY == 20
    everything = PromptBuilder(catalog, "rank-likelihood", counter=len, max_history=None).build(
        HISTORY, candidates=["m51"])
    assert everything.trim.history_kept == len(HISTORY) and everything.n_tokens > prompt.n_tokens
