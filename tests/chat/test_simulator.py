"""The simulated user (issue 15): it never writes its target's title or a word of it, a paraphrase that leaks
falls back to the rule's wording, its critiques come from the target's facts, and the metrics count as
InteRecAgent's do; the control without critiques equals the retriever showing more items."""

from __future__ import annotations

import pytest

from recllm.chat import ChatAgent, ChatRecommender, RuleExtractor
from recllm.chat.simulator import Dialogue, SimulatedUser, SimulationResult, leaks, simulate, title_words
from recllm.data import DataBundle
from recllm.errors import RecllmError
from recllm.models.popularity import MostPopular
from recllm.models.registry import create_model


@pytest.fixture(scope="module")
def agent(ml100k: DataBundle) -> ChatAgent:
    retriever = create_model("ease", {"l2": 100.0}).fit(ml100k.dataset)
    return ChatAgent(ChatRecommender(ml100k, retriever, MostPopular().fit(ml100k.dataset)),
                     RuleExtractor(ml100k.catalog))


def cases(ml100k: DataBundle, n: int) -> list[tuple[str, list[str], str]]:
    """Users' histories without their last item, which becomes the target."""
    dataset = ml100k.dataset
    out = []
    for user in range(n):
        items = dataset.item_vocab.lookup_ids(dataset.sequence(user))
        out.append((dataset.user_vocab.id(user), items[:-1], items[-1]))
    return out


def test_no_message_names_the_target_or_a_word_of_its_title(ml100k: DataBundle, agent: ChatAgent):
    result = simulate(agent, ml100k.catalog, cases(ml100k, 30), turns=5)
    for dialogue in result.dialogues:
        words = title_words(ml100k.catalog, dialogue.target)
        for message in dialogue.messages:
            assert not leaks(message, ml100k.catalog, dialogue.target), (message, words)
    # "Star Wars" shares "Star" with "Star Trek": a history title sharing a word with the target is never named
    user = SimulatedUser(ml100k.catalog, ["222", "50", "100"], "227")  # Star Trek: First Contact, ..., Star Trek VI
    assert "Star" not in user.opening() and "Fargo" in user.opening()


def test_a_leaking_paraphrase_falls_back_to_the_rules_wording(ml100k: DataBundle):
    target = "50"  # Star Wars
    user = SimulatedUser(ml100k.catalog, ["100", "181"], target, paraphrase=lambda m: "I want Star Wars, obviously")
    message = user.opening()
    assert message.startswith("I liked") and user.leaks == 1
    honest = SimulatedUser(ml100k.catalog, ["100"], target, paraphrase=lambda m: "fargo was great, what next?")
    assert honest.opening() == "fargo was great, what next?" and honest.leaks == 0


def test_critiques_come_from_the_target_facts(ml100k: DataBundle):
    user = SimulatedUser(ml100k.catalog, ["1", "95"], "183")  # Alien (1979): Action, Horror, Sci-Fi, Thriller
    first = user.reply(["1", "95"], asked=False)
    assert first.startswith("Something else.") and "Horror" in first  # the genre its history lacks most
    assert "70s" in user.reply(["1"], asked=False)
    third = user.reply(["1", "95"], asked=False)  # the genre the shown items share most and the target lacks
    assert any(f"No {g}, please" in third for g in ("Animation", "Children's", "Comedy")), third


def test_metrics_count_misses_as_one_turn_more():
    result = SimulationResult([Dialogue("u", "t", ("m",), (("t",),), 1), Dialogue("v", "t", ("m",), ((),), None),
                               Dialogue("w", "t", ("m",), ((), ("t",)), 2)], turns=3)
    summary = result.summary()
    assert summary["success"] == pytest.approx(2 / 3) and summary["average_turns"] == pytest.approx((1 + 4 + 2) / 3)
    assert summary["success_by_turn"] == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: pytest.approx(2 / 3)}
    with pytest.raises(RecllmError, match="no dialogues"):
        SimulationResult().summary()


def test_the_control_without_critiques_only_pages_through_the_retrievers_list(ml100k: DataBundle, agent: ChatAgent):
    control = simulate(agent, ml100k.catalog, cases(ml100k, 20), turns=3, critique=False)
    for dialogue in control.dialogues:
        assert all(m == "Something else." for m in dialogue.messages[1:])
        shown = [i for turn in dialogue.shown for i in turn]
        assert len(shown) == len(set(shown))  # "something else" never shows an item twice
