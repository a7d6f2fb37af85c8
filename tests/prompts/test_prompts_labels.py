"""Verbalizer labels are single tokens for SmolLM2's tokenizer; the likelihood prompt ends where a title begins."""

from __future__ import annotations

import string

import pytest

from recllm.data import ItemCatalog
from recllm.llm import LLM
from recllm.prompts import PromptBuilder, PromptError, check_single_tokens, piece_counter, verbalizer_labels


def _ids(llm: LLM, text: str) -> list[int]:
    return list(llm.tokenizer(text, add_special_tokens=False)["input_ids"])  # type: ignore[attr-defined]


def test_letter_labels_are_single_distinct_tokens(llm: LLM) -> None:
    labels = verbalizer_labels(20, llm)
    assert labels == tuple(string.ascii_uppercase[:20])
    for leading_space in (False, True):
        checked = verbalizer_labels(20, llm, leading_space=leading_space)
        texts = [(" " if leading_space else "") + label for label in checked]
        ids = [_ids(llm, text) for text in texts]
        assert all(len(i) == 1 for i in ids)
        assert len({i[0] for i in ids}) == 20


def test_numbers_run_out_after_nine_for_smollm2(llm: LLM) -> None:
    assert verbalizer_labels(9, llm, style="numbers") == tuple(str(i) for i in range(1, 10))
    assert len(_ids(llm, "10")) == 2  # SmolLM2 splits digits
    with pytest.raises(PromptError, match=r"label '10' \(style 'numbers'\) is 2 tokens .* first 9 labels"):
        verbalizer_labels(12, llm, style="numbers")
    with pytest.raises(PromptError, match=r"label ' 1' .* is 2 tokens"):
        verbalizer_labels(3, llm, style="numbers", leading_space=True)
    with pytest.raises(PromptError, match="only 26 labels, 30 needed"):
        verbalizer_labels(30, llm)


def test_auto_style_finds_enough_labels_or_says_why_not(llm: LLM) -> None:
    labels = verbalizer_labels(30, llm, style="auto")
    assert labels[:26] == tuple(string.ascii_uppercase) and labels[26:] == ("a", "b", "c", "d")
    assert all(len(_ids(llm, label)) == 1 for label in labels)
    with pytest.raises(PromptError, match="no label style gives 60 single-token labels"):
        verbalizer_labels(60, llm, style="auto")


def test_a_plain_counter_works_for_labels() -> None:
    def characters(text: str) -> int:
        return len(text)

    assert verbalizer_labels(3, characters) == ("A", "B", "C")
    with pytest.raises(PromptError, match="is 2 tokens for characters"):
        verbalizer_labels(3, characters, leading_space=True)


def test_verbalizer_prompt_choices_match_the_answer_position(catalog: ItemCatalog, llm: LLM) -> None:
    candidates = [f"m{i}" for i in range(1, 21)]
    prompt = PromptBuilder(catalog, "rank-verbalizer", llm=llm).build(["m30"], candidates=candidates)
    rendered = prompt.render(llm)
    assert rendered.endswith("<|im_start|>assistant\n")  # the answer label is the very next token
    assert prompt.choices == prompt.labels == tuple(string.ascii_uppercase[:20])
    check_single_tokens(prompt.choices, llm)
    assert "\nT. Movie Number 20 (2000)" in prompt.text


def test_rating_choices_are_single_digit_tokens(catalog: ItemCatalog, llm: LLM) -> None:
    prompt = PromptBuilder(catalog, "rating", llm=llm).build(["m1"], target="m2")
    assert prompt.choices == ("1", "2", "3", "4", "5")
    assert all(len(_ids(llm, c)) == 1 for c in prompt.choices)


def test_likelihood_prompt_ends_where_a_title_begins(catalog: ItemCatalog, llm: LLM) -> None:
    prompt = PromptBuilder(catalog, "rank-likelihood", llm=llm).build(["m1", "m2"], candidates=["m3", "m14"])
    rendered = prompt.render(llm)
    assert rendered.endswith("<|im_start|>assistant\nNext movie:")
    assert rendered == rendered.rstrip()
    piece = piece_counter(llm)
    for item, continuation in zip(prompt.candidates, prompt.continuations, strict=True):
        assert continuation == " " + catalog[item].label()
        # the title's tokens do not merge with the prompt's: scoring the continuation is scoring the title
        whole = _ids(llm, rendered + continuation)
        assert whole == _ids(llm, rendered) + _ids(llm, continuation)
        assert piece(continuation) == len(_ids(llm, continuation))
