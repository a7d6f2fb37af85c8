import pytest

from recllm.data import Item, ItemCatalog
from recllm.data.catalog import natural_title, normalize_title
from recllm.errors import DataError, UnknownIdError


@pytest.fixture
def catalog() -> ItemCatalog:
    return ItemCatalog([
        Item("1", "Usual Suspects, The", 1995, ("Crime", "Thriller")),
        Item("2", "Star Wars", 1977, ("Action", "Sci-Fi"), {"director": "George Lucas"}),
        Item("3", "Hamlet", 1948, ("Drama",)),
        Item("4", "Hamlet", 1996, ("Drama",)),
        Item("5", "Amélie", 2001, ("Comedy",)),
    ])


def test_titles_read_naturally(catalog: ItemCatalog):
    assert natural_title("Usual Suspects, The") == "The Usual Suspects"
    assert catalog["1"].label() == "The Usual Suspects (1995)"
    assert catalog.describe("2") == "Star Wars (1977); genres: Action, Sci-Fi; director: George Lucas"
    assert normalize_title("The Usual Suspects (1995)") == normalize_title("Usual Suspects, The")


def test_lookup_exact_article_year_accents_and_fuzzy(catalog: ItemCatalog):
    assert catalog.lookup("the usual suspects").id == "1"
    assert catalog.lookup("Usual Suspect").id == "1"  # fuzzy, one letter off
    assert catalog.lookup("Hamlet (1996)").id == "4"  # the year picks the remake
    assert catalog.lookup("Hamlet").id == "3"  # without a year: the first by id
    assert catalog.lookup("amelie").id == "5"
    assert catalog.lookup("Completely Different Film") is None
    assert [i.id for i in catalog.lookup_all("hamlet")] == ["3", "4"]


@pytest.mark.parametrize(("query", "expected"), [
    ("star", "2"), ("STAR WARS", "2"), ("wars", "2"), ("st", "2"),  # word starts, any case
    ("usual suspects", "1"), ("Suspects, The", "1"), ("the usual", "1"),  # articles left out or moved
    ("usaul suspects", "1"), ("star warz", "2"), ("amelie", "5"),  # typos, accents
    ("hamlet 1996", "4"), ("Hamlet (1948)", "3"),  # a year picks the version
])
def test_search_finds_what_people_type(catalog: ItemCatalog, query: str, expected: str):
    assert catalog.search(query)[0].id == expected


def test_search_ranks_whole_words_first_and_finds_nothing_for_noise():
    catalog = ItemCatalog([Item("1", "Heathers", 1989), Item("2", "Heat", 1995), Item("3", "Twelve Monkeys", 1995),
                           Item("4", "Toy Story", 1995), Item("5", "Toys", 1992)])
    assert [i.id for i in catalog.search("heat")] == ["2", "1"]
    assert [i.id for i in catalog.search("12 monkeys")] == ["3"]
    assert [i.id for i in catalog.search("toy")][:2] == ["4", "5"]
    assert [i.id for i in catalog.search("toy stroy")] == ["4"]
    assert catalog.search("xyzzy") == [] and catalog.search("  ") == [] and catalog.search("(1995)") == []
    assert len(catalog.search("t", limit=2)) == 2


def test_catalog_errors(catalog: ItemCatalog):
    with pytest.raises(UnknownIdError, match="unknown item id '99'"):
        catalog["99"]
    with pytest.raises(DataError, match="duplicate item id '1'"):
        ItemCatalog([Item("1", "a"), Item("1", "b")])
    assert catalog.title("99") == "99"
