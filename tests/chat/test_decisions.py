"""Decision support in the chat (issue 15): criteria in words weigh the aspects, "compare the first two" sets
items side by side, and questions about an item are answered from its catalog facts only."""

from __future__ import annotations

import pytest

from recllm.chat import ChatAgent, ChatRecommender, Preferences, RuleExtractor
from recllm.chat.aspects import WEIGHTS
from recllm.chat.criteria import read_criteria
from recllm.data import DataBundle
from recllm.errors import RecllmError
from recllm.models.popularity import MostPopular
from recllm.models.registry import create_model

SHOWN = ("71", "95", "100")  # The Lion King (1994), Aladdin (1992), Fargo (1996)


@pytest.fixture(scope="module")
def agent(ml100k: DataBundle) -> ChatAgent:
    retriever = create_model("ease", {"l2": 100.0}).fit(ml100k.dataset)
    return ChatAgent(ChatRecommender(ml100k, retriever, MostPopular().fit(ml100k.dataset)),
                     RuleExtractor(ml100k.catalog))


def test_criteria_in_words_become_weights():
    weights = read_criteria("mostly the era, a bit the genre, and I don't care about popularity")
    assert weights == {**WEIGHTS, "era": WEIGHTS["era"] * 4, "genre": WEIGHTS["genre"] * 0.5, "popularity": 0.0}
    assert read_criteria("something funny from the 90s") is None
    assert read_criteria("something popular from the 90s, a different kind of film") is None  # wishes, not weights
    assert read_criteria("the era matters most")["era"] == WEIGHTS["era"] * 2


def test_criteria_change_the_aggregation(agent: ChatAgent):
    analyzer = agent.recommender.analyzer
    history = ["1", "95"]
    plain = analyzer.analyze(history, "100")
    era_only = analyzer.analyze(history, "100", weights={**{k: 0.0 for k in WEIGHTS}, "era": 1.0})
    assert era_only.score == pytest.approx(next(a.score for a in era_only.aspects if a.name == "era"))
    assert era_only.score != pytest.approx(plain.score)
    with pytest.raises(RecllmError, match="non-negative"):
        analyzer.analyze(history, "100", weights={"mood": 1.0})
    reply = agent.turn(Preferences(liked=("1",), shown=SHOWN), "mostly the genre, not the era")
    assert reply.action == "recommend" and reply.state.criteria is not None and set(reply.state.shown) == set(SHOWN)
    scores = [int(i.reason.split("%")[0].split()[-1]) for i in reply.items]
    assert scores == sorted(scores, reverse=True)


def test_compare_the_first_two_side_by_side(agent: ChatAgent):
    reply = agent.turn(Preferences(liked=("1",), shown=SHOWN), "compare the first two")
    assert reply.action == "compare" and [i.item for i in reply.items] == ["71", "95"]
    assert all(f"- {aspect}:" in reply.text for aspect in WEIGHTS) and "Overall" in reply.text
    named = agent.turn(Preferences(), "compare Fargo and Heat")
    assert named.action == "compare" and [i.item for i in named.items] == ["100", "273"]
    alone = agent.turn(Preferences(), "compare them")
    assert alone.action == "ask" and "which two or three" in alone.text


@pytest.mark.parametrize(("message", "expected"), [
    ("is it animated?", "Yes: The Lion King (1994) is Animation"),
    ("is the third one a comedy?", "No: Fargo (1996) is not Comedy"),
    ("how old is the second one?", "Aladdin is from 1992"),
    ("how old is Fargo?", "Fargo is from 1996"),
    ("who directed it?", "The catalog does not say that about The Lion King (1994)"),
])
def test_questions_about_an_item_are_answered_from_its_facts(agent: ChatAgent, message: str, expected: str):
    reply = agent.turn(Preferences(shown=SHOWN), message)
    assert reply.action == "answer" and expected in reply.text and reply.state.shown == SHOWN


def test_requests_phrased_as_questions_are_not_answered_as_facts(agent: ChatAgent):
    for message in ("is there anything like Heat?", "what do you have after 1990?", "any good comedies?"):
        assert agent.turn(Preferences(shown=SHOWN), message).action == "recommend", message
