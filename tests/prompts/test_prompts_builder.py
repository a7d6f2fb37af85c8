"""Prompt = task description + behaviour injection (history with facts and ratings) + output-format indicator."""

from __future__ import annotations

import pytest

from recllm.data import Dataset, ItemCatalog
from recllm.errors import UnknownIdError
from recllm.prompts import PromptBuilder, PromptError, user_history


def _user_text(prompt: object) -> str:
    return prompt.messages[-1]["content"]  # type: ignore[attr-defined]


def test_history_in_time_order_with_facts_and_ratings(catalog: ItemCatalog, train: Dataset) -> None:
    prompt = PromptBuilder(catalog, "next-item", train=train).build(user="alice")
    text = _user_text(prompt)
    lines = [f"{n}. {catalog.describe(item)} (rated {rating} of 5)"
             for n, (item, rating) in enumerate([("m1", 5), ("m2", 4), ("m3", 3), ("m4", 4), ("m5", 2)], start=1)]
    assert "The movies this user watched, oldest first:\n" + "\n".join(lines) in text
    assert "Movie Number 1 (1981); genres: Drama; director: Director 1 (rated 5 of 5)" in text
    assert prompt.history == ("m1", "m2", "m3", "m4", "m5")
    # task description first, output format last
    assert text.startswith("Name the movie this user will most likely watch next.")
    assert text.endswith("Answer with the title and year of one movie only, like: Title (Year).")
    assert prompt.messages[0]["role"] == "system"


def test_newest_first_order_and_no_ratings_without_them(catalog: ItemCatalog, unrated: Dataset) -> None:
    history = user_history(unrated, "bob")
    assert [e.rating for e in history] == [None] * 6
    prompt = PromptBuilder(catalog, "next-item", order="newest-first").build(history)
    text = _user_text(prompt)
    assert "rated" not in text
    assert "newest first:\n1. Secret Held Out Bob (2001); genres: Drama\n2. Movie Number 7" in text
    assert prompt.history == ("h-bob", "m7", "m4", "m3", "m2", "m1")


def test_verbalizer_candidates_are_labelled_in_the_order_given(catalog: ItemCatalog) -> None:
    candidates = ["m9", "m8", "m20"]
    prompt = PromptBuilder(catalog, "rank-verbalizer").build(["m1"], candidates=candidates)
    text = _user_text(prompt)
    assert "Candidates:\nA. Movie Number 9 (1989); genres: Western; director: Director 9\nB. Movie Number 8" in text
    assert "C. Movie Number 20" in text
    assert text.endswith("Answer with the label of the best candidate (A to C) and nothing else.")
    assert prompt.labels == ("A", "B", "C") and prompt.choices == ("A", "B", "C")
    assert prompt.candidates == ("m9", "m8", "m20")
    assert prompt.item_of(" b ") == "m8" and prompt.label_of("m20") == "C" and prompt.item_of("Z") is None


def test_listwise_says_how_to_answer_lines_or_json(catalog: ItemCatalog) -> None:
    lines = PromptBuilder(catalog, "rank-listwise").build(["m1"], candidates=["m2", "m3"], k=1)
    assert "[1] Movie Number 2" in _user_text(lines) and "[2] Movie Number 3" in _user_text(lines)
    assert _user_text(lines).endswith("top 1 candidates, best first, one number per line, and nothing else.")
    assert lines.labels == ("1", "2") and lines.output == "lines"
    json = PromptBuilder(catalog, "rank-listwise", output="json").build(["m1"], candidates=["m2", "m3"])
    assert _user_text(json).endswith('{"ranking": [the numbers of the top 2 candidates, best first]}.')
    assert json.output == "json"
    cot = PromptBuilder(catalog, "rank-listwise", "chain-of-thought").build(["m1"], candidates=["m2", "m3"])
    assert "Think step by step." in _user_text(cot) and "'Answer:'" in _user_text(cot)


def test_rating_and_explain_show_the_target(catalog: ItemCatalog, train: Dataset) -> None:
    rating = PromptBuilder(catalog, "rating", train=train).build(user="carol", target="m30")
    assert "The movie to rate: Movie Number 30 (2010); genres: Comedy" in _user_text(rating)
    assert rating.choices == ("1", "2", "3", "4", "5") and rating.target == "m30"
    explain = PromptBuilder(catalog, "explain", train=train).build(user="carol", target="m30")
    text = _user_text(explain)
    assert text.startswith("Explain to this user why they may enjoy Movie Number 30 (2010).")
    assert "Mention only movies from the user's history above, by their exact titles" in text
    assert explain.history == ("m1", "m8", "m9")


def test_likelihood_prompt_text_ends_with_the_answer_prefix(catalog: ItemCatalog) -> None:
    prompt = PromptBuilder(catalog, "rank-likelihood").build(["m1", "m2"], candidates=["m3", "m4"])
    assert prompt.text.endswith("\n\nNext movie:")
    assert prompt.render() == prompt.text
    assert prompt.continuations == (" Movie Number 3 (1983)", " Movie Number 4 (1984)")
    assert "Movie Number 3" not in prompt.text  # candidates are scored, not shown
    request = prompt.request(max_new_tokens=8)
    assert request.prompt == prompt.text
    empty = PromptBuilder(catalog, "rank-likelihood").build([], candidates=["m3"])  # calibration prompt
    assert "Nothing is known about this user yet." in empty.text and empty.history == ()


def test_bad_inputs_are_clear_errors(catalog: ItemCatalog, train: Dataset) -> None:
    with pytest.raises(PromptError, match="needs candidates"):
        PromptBuilder(catalog, "rank-listwise").build(["m1"])
    with pytest.raises(PromptError, match="needs the target"):
        PromptBuilder(catalog, "rating").build(["m1"])
    with pytest.raises(PromptError, match="same item twice"):
        PromptBuilder(catalog, "rank-verbalizer").build(["m1"], candidates=["m2", "m2"])
    with pytest.raises(UnknownIdError, match="unknown item id 'nope'"):
        PromptBuilder(catalog, "rank-verbalizer").build(["m1"], candidates=["m2", "nope"])
    with pytest.raises(UnknownIdError, match="unknown user id 'zed'"):
        PromptBuilder(catalog, "next-item", train=train).build(user="zed")
