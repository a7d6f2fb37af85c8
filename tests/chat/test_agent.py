"""The chat agent: reading messages into preferences, asking when there is nothing to go on, recommending
within every stated constraint across a scripted conversation, and an LLM reading that is used only where
it checks out."""

from __future__ import annotations

import pytest

from fakes import ScriptedLLM
from recllm.chat import ChatAgent, ChatRecommender, LLMExtractor, Preferences, RuleExtractor
from recllm.chat.agent import ChatItem
from recllm.data import DataBundle
from recllm.models.popularity import MostPopular
from recllm.models.registry import create_model


@pytest.fixture(scope="module")
def recommender(ml100k: DataBundle) -> ChatRecommender:
    retriever = create_model("ease", {"l2": 100.0}).fit(ml100k.dataset)
    return ChatRecommender(ml100k, retriever, MostPopular().fit(ml100k.dataset))


@pytest.fixture
def agent(recommender: ChatRecommender, ml100k: DataBundle) -> ChatAgent:
    return ChatAgent(recommender, RuleExtractor(ml100k.catalog))


def assert_respects(items: tuple[ChatItem, ...], state: Preferences) -> None:
    """Every item meets every constraint the user has stated so far, and none was liked or disliked."""
    assert items
    for item in items:
        genres = set(item.genres)
        assert not state.genres or genres & set(state.genres), item
        assert not genres & set(state.avoid_genres), item
        assert state.year_min is None or (item.year or 0) >= state.year_min, item
        assert state.year_max is None or (item.year or 9999) <= state.year_max, item
        assert item.item not in state.liked and item.item not in state.disliked, item
        assert item.reason


def test_a_five_turn_conversation_keeps_every_constraint(agent: ChatAgent):
    state = Preferences()
    first = agent.turn(state, "I loved The Empire Strikes Back and Raiders of the Lost Ark")
    assert first.action == "recommend" and set(first.state.liked) == {"172", "174"}
    assert_respects(first.items, first.state)
    second = agent.turn(first.state, "I'm in the mood for some science fiction")
    assert second.state.genres == ("Sci-Fi",)
    assert_respects(second.items, second.state)
    third = agent.turn(second.state, "something older, and no horror please")
    oldest_shown = min(i.year for i in second.items)
    assert third.state.year_max == oldest_shown - 1 and third.state.avoid_genres == ("Horror",)
    assert_respects(third.items, third.state)
    rejected = third.items[0].item
    fourth = agent.turn(third.state, "I didn't like the first one")
    assert rejected in fourth.state.disliked and rejected not in {i.item for i in fourth.items}
    assert_respects(fourth.items, fourth.state)
    chosen = fourth.items[1].item
    fifth = agent.turn(fourth.state, "more like the second one")
    assert chosen in fifth.state.liked
    assert_respects(fifth.items, fifth.state)
    assert fifth.text.startswith("Here are") and "no Horror" in fifth.text


def test_it_asks_when_there_is_nothing_to_go_on(agent: ChatAgent):
    reply = agent.turn(Preferences(), "hello there")
    assert reply.action == "ask" and reply.items == () and "Tell me a few movies" in reply.text
    unknown = agent.turn(Preferences(), "I loved Zorblax Returns (2031)")
    assert unknown.action == "ask" and "Zorblax Returns (2031)" in unknown.text
    negative_only = agent.turn(Preferences(), "no horror")
    assert negative_only.action == "ask" and negative_only.state.avoid_genres == ("Horror",)


def test_decades_bounds_and_newer(agent: ChatAgent):
    eighties = agent.turn(Preferences(), "a comedy from the 80s")
    assert (eighties.state.year_min, eighties.state.year_max) == (1980, 1989)
    assert_respects(eighties.items, eighties.state)
    bounded = agent.turn(Preferences(), "a thriller made before 1970")
    assert bounded.state.year_max == 1969 and bounded.state.genres == ("Thriller",)
    assert_respects(bounded.items, bounded.state)
    newer = agent.turn(bounded.state, "newer")
    assert newer.state.year_min == max(i.year for i in bounded.items) + 1
    assert_respects(newer.items, newer.state)


def test_no_match_says_what_to_loosen(agent: ChatAgent):
    reply = agent.turn(Preferences(), "a film-noir western from before 1930")
    assert reply.action == "no-match" and reply.items == ()
    assert "Film-Noir/Western" in reply.text and "up to 1929" in reply.text and "Loosen" in reply.text


def test_something_else_shows_different_items(agent: ChatAgent):
    first = agent.turn(Preferences(), "I loved Toy Story")
    again = agent.turn(first.state, "show me something else")
    assert not {i.item for i in first.items} & {i.item for i in again.items}
    assert_respects(again.items, again.state)


def test_llm_reading_is_used_only_where_it_checks_out(recommender: ChatRecommender, ml100k: DataBundle):
    answer = ('{"liked_titles": ["Heat", "Zorblax Returns"], "disliked_titles": [], "genres": ["Crime", "Cyberpunk"],'
              ' "avoid_genres": [], "min_year": 1990, "max_year": "soon"}')
    extractor = LLMExtractor(ScriptedLLM([answer, "I am not sure what you mean.", answer]), ml100k.catalog)
    agent = ChatAgent(recommender, extractor)
    reply = agent.turn(Preferences(), "I want a tense crime film like Heat")
    heat = ml100k.catalog.lookup("Heat").id
    assert reply.update.source == "llm+rules" and heat in reply.state.liked
    assert reply.state.genres == ("Thriller", "Crime")  # "tense": Thriller
    assert reply.state.year_min is None and reply.state.year_max is None  # the model's 1990: no year was written
    dropped = " ".join(reply.update.notes)
    assert "Zorblax Returns" in dropped and "Cyberpunk" in dropped and "soon" in dropped
    assert_respects(reply.items, reply.state)
    unusable = agent.turn(Preferences(), "I loved Toy Story")
    assert unusable.state.liked == ("1",) and "no JSON object; rules only" in " ".join(unusable.update.notes)
    assert extractor.n_unusable == 1


def test_the_model_fills_only_what_the_rules_left_empty_and_names_only_what_was_said(ml100k: DataBundle):
    """"something funny" read by a model as Fantasy stays Comedy; a catalog title the message never names is
    dropped; years the rules did not find come from the model."""
    answer = ('{"liked_titles": ["Fargo"], "disliked_titles": [], "genres": ["Fantasy"], "avoid_genres": [],'
              ' "min_year": 1980, "max_year": 1989}')
    extractor = LLMExtractor(ScriptedLLM([answer]), ml100k.catalog)
    update = extractor.extract("something funny from back when I was a kid in the eighties", Preferences())
    assert update.genres == ("Comedy",) and update.liked == () and (update.year_min, update.year_max) == (1980, 1989)
    assert any("Fargo" in note and "does not name it" in note for note in update.notes)


@pytest.mark.parametrize(("message", "wish"), [
    ("something with space battles and robots", "space battles robots"),
    ("I want a sci-fi movie about time travel", "time travel"),
    ("I'm in the mood for a romantic comedy set in Paris", "romantic set paris"),
])
def test_free_text_wishes_keep_only_what_no_other_field_holds(ml100k: DataBundle, message: str, wish: str):
    assert RuleExtractor(ml100k.catalog).extract(message, Preferences()).wishes == (wish,)


@pytest.mark.parametrize("message", ["I would like science fiction from the 80s", "no horror please",
                                     "I loved Alien and Heat"])
def test_messages_that_say_only_structured_things_carry_no_wish(ml100k: DataBundle, message: str):
    assert RuleExtractor(ml100k.catalog).extract(message, Preferences()).wishes == ()


def test_a_wish_lifts_the_items_whose_descriptions_match_it(recommender: ChatRecommender, ml100k: DataBundle):
    from recllm.chat import WishMatcher
    from recllm.llm import create_embedder

    matcher = WishMatcher(create_embedder("st"), ml100k.catalog, ml100k.dataset.item_vocab.ids)
    with_wishes = ChatRecommender(ml100k, recommender.retriever, recommender.popular, wishes=matcher)
    prefs = Preferences(wishes=("christmas",))
    plain, _ = recommender.recommend(prefs, 10)
    wished, _ = with_wishes.recommend(prefs, 10)
    christmas = [i for i in ml100k.catalog if "christmas" in i.title.lower()]
    assert christmas  # e.g. Miracle on 34th Street's remakes, A Christmas Story
    hits = {i.id for i in christmas}
    assert len(hits & set(wished)) > len(hits & set(plain))
    reasons = [with_wishes.reason(i, prefs) for i in wished if i in hits]
    assert any("close to your wish for 'christmas'" in r for r in reasons)


def test_answers_keep_the_genres_the_liked_titles_share(recommender: ChatRecommender, ml100k: DataBundle):
    """After two animated favourites, the answers are animated too (the retriever alone gave 2 of 5)."""
    catalog = ml100k.catalog
    shares = []
    for pair in (("1", "95"), ("183", "195"), ("100", "273")):  # Toy Story+Aladdin, Alien+Terminator, Fargo+Heat
        shared = set(catalog[pair[0]].genres) & set(catalog[pair[1]].genres)
        ids, _ = recommender.recommend(Preferences(liked=pair), 5)
        shares.append(sum(bool(set(catalog[i].genres) & shared) for i in ids) / len(ids))
    assert min(shares) >= 0.6 and sum(shares) / len(shares) >= 0.8, shares
    assert recommender.liked_genres(Preferences(liked=("1", "95"), genres=("Drama",))) == ()  # asked: not guessed
