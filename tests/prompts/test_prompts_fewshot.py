"""Few-shot demonstrations come from the most similar other users' training data, never the target's."""

from __future__ import annotations

import numpy as np
import pytest

from recllm.data import Dataset, ItemCatalog
from recllm.errors import ConfigError
from recllm.prompts import TASKS, FewShotSelector, PromptBuilder, PromptError, available_templates


def test_most_similar_other_users_by_cosine(train: Dataset) -> None:
    selector = FewShotSelector(train)
    sims = selector.similarities("alice")
    index = train.user_vocab.index
    assert sims[index("alice")] == pytest.approx(1.0)
    assert sims[index("bob")] == pytest.approx(4 / 5)  # 4 shared of 5 and 5 items
    assert sims[index("carol")] == pytest.approx(1 / np.sqrt(15))
    assert sims[index("dave")] == 0
    demos = selector.select(3, user="alice")
    assert [d.user for d in demos] == ["bob", "carol"]  # never alice; dave shares nothing
    assert demos[0].similarity == pytest.approx(0.8)
    assert [e.item for e in demos[0].history] == ["m1", "m2", "m3", "m4"]
    assert (demos[0].next.item, demos[0].next.rating) == ("m7", 5.0)
    assert [d.user for d in selector.select(3, user="alice", exclude_users=["bob"])] == ["carol"]


def test_selection_is_deterministic_and_ties_go_to_the_first_user(train: Dataset) -> None:
    selector = FewShotSelector(train, history_length=1)
    first = selector.select(2, user="carol")  # alice and bob both share one item with carol
    assert [d.user for d in first] == ["alice", "bob"]
    assert first == selector.select(2, user="carol")
    assert [e.item for e in first[0].history] == ["m4"]  # history_length=1: the item before the last


def test_a_history_without_a_user_finds_neighbours(train: Dataset) -> None:
    demos = FewShotSelector(train).select(1, history=["m10", "m11", "unknown-item"])
    assert [d.user for d in demos] == ["dave"]
    with pytest.raises(ConfigError, match="needs the target user or their history"):
        FewShotSelector(train).select(1)


def test_few_shot_prompt_shows_similar_users_not_the_target(catalog: ItemCatalog, train: Dataset) -> None:
    prompt = PromptBuilder(catalog, "next-item", "few-shot", train=train).build(user="alice")
    text = prompt.messages[-1]["content"]
    assert prompt.demonstration_users == ("bob", "carol")
    assert "Example 1: a user watched, oldest first:\n1. Movie Number 1 (1981)" in text
    assert "Next movie: Movie Number 7 (1987)" in text  # bob's real next item
    assert "Next movie: Movie Number 9 (1989)" in text  # carol's
    assert text.index("Example 1") < text.index("Now this user.") < text.index("Answer with")
    assert "Movie Number 5 (1985)" in text.split("Now this user.")[1]  # alice's own history after the examples


def test_rating_demonstrations_show_the_rating_given(catalog: ItemCatalog, train: Dataset,
                                                     unrated: Dataset) -> None:
    prompt = PromptBuilder(catalog, "rating", "few-shot", train=train, n_shots=1).build(user="alice", target="m9")
    assert "They then rated Movie Number 7 (1987): 5" in prompt.text
    with pytest.raises(PromptError, match="need ratings"):
        PromptBuilder(catalog, "rating", "few-shot", train=unrated).build(user="alice", target="m9")
    with pytest.raises(ConfigError, match="few-shot variant needs 'train'"):
        PromptBuilder(catalog, "rating", "few-shot")


@pytest.mark.parametrize(("task", "variant"), [pair for pair in available_templates() if pair[0] in TASKS])
def test_held_out_items_never_reach_a_prompt(catalog: ItemCatalog, train: Dataset, held_out: dict[str, str],
                                            task: str, variant: str) -> None:
    builder = PromptBuilder(catalog, task, variant, train=train, n_shots=3)
    for user in held_out:
        kwargs: dict[str, object] = {}
        if task.startswith("rank-"):
            kwargs["candidates"] = ["m20", "m21", "m22"]
        if task in ("rating", "explain"):
            kwargs["target"] = "m23"
        prompt = builder.build(user=user, **kwargs)
        assert "Secret Held Out" not in prompt.text
        assert not set(held_out.values()) & set(prompt.history)
        assert user not in prompt.demonstration_users


def test_the_held_out_check_has_teeth(catalog: ItemCatalog, full: Dataset) -> None:
    """Built from all interactions instead of training ones, the held-out items do show up."""
    prompt = PromptBuilder(catalog, "next-item", "few-shot", train=full).build(user="alice")
    assert "Secret Held Out Alice" in prompt.text and "Secret Held Out Bob" in prompt.text
