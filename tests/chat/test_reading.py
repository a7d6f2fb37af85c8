"""Reading people right (issue 15): each class of misreading, by example, and field-level precision and recall
of the rules on the labelled utterance sets in tests/data (a development set, a held-out set written
independently after the rules were done and then used to correct them, and a fresh set never used)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recllm.chat import Preferences, RuleExtractor
from recllm.chat.scoring import load_utterances, score
from recllm.chat.years import YearReader
from recllm.data import DataBundle, Item, ItemCatalog
from recllm.errors import DataError

DATA = Path(__file__).resolve().parents[1] / "data"
SHOWN = ("50", "100", "181", "313", "82")  # Star Wars 1977, Fargo 1996, Return of the Jedi 1983, Titanic 1997, ...


@pytest.fixture(scope="module")
def rules(ml100k: DataBundle) -> RuleExtractor:
    dataset = ml100k.dataset
    popularity = {i: float(dataset.item_popularity[dataset.item_vocab.index(i)]) for i in dataset.item_vocab.ids}
    return RuleExtractor(ml100k.catalog, popularity)


@pytest.mark.parametrize(("text", "year_min", "year_max"), [
    ("nothing before 1990", 1990, None), ("no films older than 1980", 1980, None), ("not after 1995", None, 1995),
    ("before 1990", None, 1989), ("until 1990", None, 1990), ("after 1995", 1996, None), ("since 1995", 1995, None),
    ("I don't want anything made before 1985", 1985, None), ("nothing newer than 1985", None, 1985),
    ("between 1985 and 1995", 1985, 1995), ("1985-1995", 1985, 1995), ("from 1960 up to 1975", 1960, 1975),
    ("from the 70s to the 90s", 1970, 1999), ("early 80s", 1980, 1984), ("mid-eighties", 1983, 1987),
    ("late 90s", 1995, 1999), ("only recent ones", 1994, None), ("from the last 10 years of the catalog", 1989, None),
    ("old movies", None, 1969), ("something from 1995", 1995, 1995), ("1990 or later", 1990, None),
    ("not the 80s", None, None),
])
def test_bounds_keep_their_direction_and_inclusiveness(text: str, year_min: int | None, year_max: int | None):
    reading = YearReader([1922, 1998]).read(text)
    assert (reading.year_min, reading.year_max) == (year_min, year_max)


def test_a_negated_decade_sets_no_bound_and_says_why():
    reading = YearReader([1922, 1998]).read("just not the 80s")
    assert not reading.found and "cannot leave out a decade" in reading.notes[0]


@pytest.mark.parametrize(("text", "genres", "avoid"), [
    ("something funny", ["Comedy"], []), ("a scary one", ["Horror"], []), ("cartoons", ["Animation"], []),
    ("something for kids", ["Children's"], []), ("a rom-com", ["Comedy", "Romance"], []),
    ("thriller-ish", ["Thriller"], []), ("nothing scary, something romantic", ["Romance"], ["Horror"]),
    ("I hate horror and love comedy", ["Comedy"], ["Horror"]), ("not in the mood for westerns", [], ["Western"]),
    ("make that comedy instead of horror", ["Comedy"], ["Horror"]), ("something feel-good", [], []),
])
def test_moods_and_everyday_words_map_to_catalog_genres(rules: RuleExtractor, text: str, genres: list[str],
                                                        avoid: list[str]):
    update = rules.extract(text, Preferences())
    assert sorted(update.genres) == genres and sorted(update.avoid_genres) == avoid and not update.liked


@pytest.mark.parametrize(("text", "liked", "disliked"), [
    ("i loved heat", ["273"], []), ("shawshenk redemption was amazing", ["64"], []),
    ("forest gump was overrated", [], ["69"]), ("12 monkeys, hated it", [], ["7"]),
    ("I liked the original Cape Fear from 1962", ["673"], []), ("i liked Chasing Amy", ["268"], []),
    ("I loved Alien but Heat was boring", ["183"], ["273"]), ("actually, I didn't like Heat", [], ["273"]),
    ("I loved The Good, the Bad and the Ugly", ["177"], []), ("I've already seen Fargo", [], ["100"]),
])
def test_titles_are_read_as_people_write_them(rules: RuleExtractor, text: str, liked: list[str],
                                              disliked: list[str]):
    update = rules.extract(text, Preferences())
    assert sorted(update.liked) == liked and sorted(update.disliked) == disliked and not update.unknown_titles


@pytest.mark.parametrize(("text", "unknown"), [
    ("I loved Inception", ["Inception"]), ("i hated gladiator", ["gladiator"]), ('I liked "Memento"', ["Memento"]),
    ("loved Toy Story 2", ["Toy Story 2"]), ("the phantom menace was boring", ["the phantom menace"]),
    ("American Beauty (1999), loved it", ["American Beauty (1999)"]), ("Rocky (1976) is the best", ["Rocky (1976)"]),
    ("have you seen Inception?", ["Inception"]), ("we watched Up last night and loved it", ["Up"]),
    ("is Inception in your catalog?", ["Inception"]), ("Shrek 2 was better than the first", ["Shrek 2"]),
    ("I grew up on The Goonies and Gremlins", ["The Goonies", "Gremlins"]),
    ("the notebook made me cry", ["the notebook"]), ("loved zodiac, and also loved the departed",
                                                     ["zodiac", "the departed"]),
])
def test_unknown_titles_are_named_not_dropped_or_misread(rules: RuleExtractor, text: str, unknown: list[str]):
    update = rules.extract(text, Preferences())
    assert list(update.unknown_titles) == unknown and not update.liked and not update.disliked


@pytest.mark.parametrize(("text", "liked", "disliked"), [
    ("the second one", ["100"], []), ("I liked the first two", ["100", "50"], []), ("#3", ["181"], []),
    ("not the last one", [], ["82"]), ("I've already seen number 2", [], ["100"]), ("option one", ["50"], []),
    ("the middle one", ["181"], []), ("I hated the second one but loved the first", ["50"], ["100"]),
])
def test_references_to_the_list_shown(rules: RuleExtractor, text: str, liked: list[str], disliked: list[str]):
    update = rules.extract(text, Preferences(shown=SHOWN))
    assert sorted(update.liked) == liked and sorted(update.disliked) == disliked


def test_critiques_are_relative_to_the_list_shown(rules: RuleExtractor):
    assert rules.extract("older ones", Preferences(shown=SHOWN)).year_max == 1976
    assert rules.extract("more recent please", Preferences(shown=SHOWN)).year_min == 1998
    assert rules.extract("these are too recent, older ones", Preferences(shown=SHOWN)).year_min is None


def test_several_intents_in_one_message(rules: RuleExtractor):
    update = rules.extract("I loved Alien and Heat, no horror, nothing before 1980, something funny", Preferences())
    assert set(update.liked) == {"183", "273"} and update.avoid_genres == ("Horror",)
    assert update.genres == ("Comedy",) and (update.year_min, update.year_max) == (1980, None)


def test_corrections_move_an_item_and_replace_years(rules: RuleExtractor):
    state = Preferences().merge(rules.extract("I loved Heat, something from the 80s", Preferences()))
    assert state.liked == ("273",) and (state.year_min, state.year_max) == (1980, 1989)
    state = state.merge(rules.extract("actually, I didn't like Heat. sorry, I meant the 90s, not the 80s", state))
    assert state.liked == () and state.disliked == ("273",) and (state.year_min, state.year_max) == (1990, 1999)


@pytest.mark.parametrize(("name", "size", "floor"), [("utterances.jsonl", 300, 0.95),
                                                      ("utterances_heldout.jsonl", 160, 0.95),
                                                      ("utterances_fresh.jsonl", 150, 0.93)])
def test_rules_read_the_labelled_sets(rules: RuleExtractor, ml100k: DataBundle, name: str, size: int, floor: float):
    """The rules' field-level F1 on genres, years and titles: the goal (0.95) on the sets the rules were
    corrected on; on the fresh set, never used to change the rules, a floor below its measured figures (titles
    0.963, genres 0.982, years 0.995 in docs/benchmarks.md) as a guard against regressions."""
    utterances = load_utterances(DATA / name, ml100k.catalog)
    assert len(utterances) >= size
    report = score(rules.extract, utterances)
    for group in ("titles", "genres", "years"):
        assert report["groups"][group]["f1"] >= floor, (group, report["groups"][group], len(report["misses"]))


def test_scoring_counts_by_hand(tmp_path: Path):
    catalog = ItemCatalog([Item("1", "Heat", 1995, ("Action",)), Item("2", "Alien", 1979, ("Horror",))])
    empty = {"liked": [], "disliked": [], "genres": [], "avoid_genres": [], "year_min": None, "year_max": None,
             "unknown_titles": []}
    lines = [{"id": "a", "class": "x", "text": "t1", "expect": {**empty, "liked": ["1", "2"], "year_min": 1990}},
             {"id": "b", "class": "y", "text": "t2", "expect": {**empty, "unknown_titles": ["The Matrix"]}}]
    path = tmp_path / "u.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    answers = {"t1": Preferences(liked=("1",), genres=("Action",), year_min=1990),
               "t2": Preferences(disliked=("2",))}

    def reader(text: str, _: Preferences):
        from recllm.chat.state import PreferenceUpdate
        a = answers[text]
        return PreferenceUpdate(liked=a.liked, disliked=a.disliked, genres=a.genres, year_min=a.year_min,
                                unknown_titles=("matrix",) if text == "t2" else ())

    report = score(reader, load_utterances(path, catalog))
    assert report["groups"]["titles"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "tp": 1, "fp": 1, "fn": 1}
    assert report["groups"]["genres"]["fp"] == 1 and report["groups"]["genres"]["precision"] == 0.0
    assert report["groups"]["years"]["f1"] == 1.0 and report["groups"]["unknown_titles"]["tp"] == 1
    assert report["exact"] == 0.0 and [m["id"] for m in report["misses"]] == ["a", "b"]


@pytest.mark.parametrize(("line", "message"), [
    ("{", "line 1: not JSON"), ('{"text": "x"}', "needs a 'text' string and an 'expect' object"),
    ('{"text": "x", "expect": {}}', "'expect' lacks liked"),
])
def test_a_bad_utterance_file_names_the_line(tmp_path: Path, line: str, message: str):
    path = tmp_path / "bad.jsonl"
    path.write_text(line)
    with pytest.raises(DataError, match=message):
        load_utterances(path, ItemCatalog([Item("1", "Heat")]))
