"""Item profiles: the check keeps prose that the catalog supports and names each kind of violation; kept profiles
join the item's text; the real default model writes profiles that the check reads."""

import pytest

from fakes import ScriptedLLM
from recllm.data import ItemCatalog
from recllm.llm import LLM
from recllm.tasks.profiles import PROFILE_FIELD, ProfileWriter, profiled_catalog, write_profiles

GOOD = "A warm and funny story about friendship and jealousy, for children and their parents."


@pytest.mark.parametrize(("item", "text", "kind"), [
    ("toy", GOOD, None),
    ("toy", "Toy Story is an animated comedy about rivalry and loyalty among toys in the 1990s.", None),
    ("toy", "Like Star Wars, it is a film about heroes who never give up on each other.", "other title"),
    ("toy", "A 1984 story about friendship and jealousy among toys, made for families.", "year"),
    ("toy", "A dark horror story about friendship and jealousy among toys in a house.", "genre"),
    ("toy", "A story directed by Steven Spielberg about toys that come alive at night.", "name"),
    ("toy", "Its themes, tone and audience are all unique in their own way.", "echo"),
    ("toy", "Toy Story.", "too short"),
    ("godfather", "The Godfather is a crime drama about family, loyalty and power, for grown-ups.", None),
])
def test_the_check_keeps_supported_prose_and_names_each_violation(movies: ItemCatalog, item: str, text: str,
                                                                  kind: str | None) -> None:
    profile = ProfileWriter(ScriptedLLM([]), movies).check(item, text)
    if kind is None:
        assert profile.kept, profile.violations
        assert profile.violations == ()
    else:
        assert not profile.kept
        assert any(v.startswith(kind) for v in profile.violations), profile.violations


def test_answers_are_cut_to_one_sentence_without_labels(movies: ItemCatalog) -> None:
    writer = ProfileWriter(ScriptedLLM([]), movies)
    assert writer.check("toy", f'Profile: "{GOOD}" Also, it was a big hit.').text == GOOD
    assert writer.check("toy", "A warm and funny story about friendship among toys and their owner who").text \
        == "A warm and funny story about friendship among toys and their owner."


def test_kept_profiles_join_the_item_text_and_failed_ones_are_left_out(movies: ItemCatalog) -> None:
    llm = ScriptedLLM([GOOD, "A grim 1950 film by Stanley Kubrick about crime and family."])
    report = write_profiles(llm, movies, ["toy", "godfather"])
    assert report.kept == 1 and report.kept_share == 0.5
    assert report.violations == {"name": 2, "year": 1}
    catalog = profiled_catalog(movies, report)
    assert catalog["toy"].extra[PROFILE_FIELD] == GOOD
    assert catalog.describe("toy").endswith(f"{PROFILE_FIELD}: {GOOD}")
    assert PROFILE_FIELD not in catalog["godfather"].extra
    assert len(catalog) == len(movies)
    # the prompt states the facts and never feeds an earlier profile back in
    prompt = llm.prompts[0].messages[0]["content"]
    assert "Toy Story (1995)" in prompt and "Animation" in prompt
    again = ProfileWriter(ScriptedLLM([]), catalog).request("toy").messages[0]["content"]
    assert GOOD not in again


def test_unknown_items_are_named(movies: ItemCatalog) -> None:
    with pytest.raises(KeyError, match="not-a-film"):
        write_profiles(ScriptedLLM([]), movies, ["toy", "not-a-film"])


def test_the_default_model_writes_profiles_the_check_reads(movies: ItemCatalog, llm: LLM) -> None:
    report = write_profiles(llm, movies, ["sw", "titanic", "toy"], max_tokens=40)
    assert set(report.profiles) == {"sw", "titanic", "toy"}
    for profile in report.profiles.values():
        assert profile.generated.strip()
        assert profile.kept == (not profile.violations)
