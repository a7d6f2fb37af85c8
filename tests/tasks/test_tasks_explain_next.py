"""Explanations cite only history and the item (checked, with fallback); zero-shot next-item is grounded."""

from __future__ import annotations

from tasks_helpers import ScriptedLLM

from recllm.tasks import Explainer, ExplanationChecker, TitleScanner, ZeroShotNextItem
from recllm.tasks.explain import template_explanation

HISTORY = ["sw", "esb", "alien"]


def _cites_only(movies, text, allowed):
    return {m.item for m in TitleScanner(movies).titles(text)} <= set(allowed)


def test_real_model_explanation_is_grounded(llm, movies):
    result = Explainer(llm, movies).explain(HISTORY, "rotj")
    assert result.text
    assert _cites_only(movies, result.text, [*HISTORY, "rotj"])
    assert set(result.cited) <= {*HISTORY, "rotj"}
    assert result.fallback_used == (not result.grounded)
    if result.fallback_used:
        assert result.violations


def test_outside_title_is_caught_and_replaced(movies):
    fake = ScriptedLLM(["You loved Star Wars (1977), so you will enjoy Return of the Jedi. It is as good as "
                        "The Matrix (1999)."])
    explainer = Explainer(fake, movies)
    result = explainer.explain(HISTORY, "rotj")
    assert result.fallback_used and not result.grounded
    assert any("Matrix" in v for v in result.violations)
    assert "Matrix" not in result.text
    assert _cites_only(movies, result.text, [*HISTORY, "rotj"])
    assert "Star Wars (1977)" in result.text or "Empire Strikes Back" in result.text  # shared genres
    assert explainer.n_fallbacks == 1 and explainer.n_violations >= 1


def test_wrong_facts_and_unknown_titles_are_violations(movies):
    checker = ExplanationChecker(movies)
    assert checker.check("Like Star Wars (1977), Return of the Jedi is a sci-fi adventure.", HISTORY, "rotj")[0] == []
    bad, _ = checker.check("Like Alien (1979), Return of the Jedi is a romance from 1990.", HISTORY, "rotj")
    assert len(bad) == 2
    bad, _ = checker.check("You will also like Space Cowboys Forever (2003).", HISTORY, "rotj")
    assert bad and "not in the catalog" in bad[0]
    bad, _ = checker.check("Star Wars (1985) started it all.", HISTORY, "rotj")
    assert bad == ["gives Star Wars (1977) the year 1985"]


def test_grounded_model_text_is_kept(movies):
    text = "Return of the Jedi finishes the story of Star Wars and The Empire Strikes Back. It is sci-fi."
    result = Explainer(ScriptedLLM([text]), movies).explain(HISTORY, "rotj")
    assert result.grounded and not result.fallback_used and result.text == text
    assert set(result.cited) == {"rotj", "sw", "esb"}


def test_next_item_real_model_returns_only_unseen_catalog_items(llm, movies):
    result = ZeroShotNextItem(llm, movies).recommend(HISTORY, k=5)
    assert set(result.items.items) <= set(movies.ids) - set(HISTORY)
    assert len(result.items) <= 5


def test_next_item_grounding_counts_hallucinations(movies):
    fake = ScriptedLLM(["1. The Matrix (1999)\n2. Star Wars (1977)\n3. Space Cowboys Forever (2003)\nAliens"])
    rec = ZeroShotNextItem(fake, movies)
    result = rec.recommend(HISTORY)
    assert result.items.items == ("matrix", "aliens")
    assert result.repeated == ("sw",)
    assert result.hallucinated == ("Space Cowboys Forever (2003)",)
    assert rec.n_hallucinated == 1


def test_nonsense_that_names_no_wrong_title_is_not_shown_as_checked(movies):
    """The classes seen in the service: a sentence that never names the item ("The user's favorite movie is
    10."), a description that contradicts the item's genres, an unsupported number."""
    checker = ExplanationChecker(movies)
    bad, _ = checker.check("The user's favorite movie is 10.", HISTORY, "raiders", require_reason=True)
    assert any("number 10" in v for v in bad) and any("does not name the recommended item" in v for v in bad)
    bad, _ = checker.check("Raiders of the Lost Ark is a classic action adventure film set in a dystopian future.",
                           HISTORY, "raiders", require_reason=True)
    assert any("says Sci-Fi" in v for v in bad)
    bad, _ = checker.check("Return of the Jedi is a great film.", HISTORY, "rotj", require_reason=True)
    assert bad == ["gives no reason tied to the user (no history title, no genre shared with it)"]
    good, cited = checker.check("Return of the Jedi is sci-fi like Alien, which you watched.", HISTORY, "rotj",
                                require_reason=True)
    assert good == [] and cited == ["rotj", "alien"]
    shared, _ = checker.check("Return of the Jedi is a space adventure.", HISTORY, "rotj", require_reason=True)
    assert shared == []  # a genre the item shares with the history is a reason
    for claim in ("It is a sequel to Alien.", "It premiered at the Venice Film Festival.", "It won an Oscar.",
                  "It is the user's favorite movie.", "It is directed by George Lucas.",
                  "Its plot is set in the 20th century.", "It is the best of the series.",
                  "It takes place in a distant galaxy."):
        bad, _ = checker.check(f"Return of the Jedi is sci-fi like Alien. {claim}", HISTORY, "rotj")
        assert any("which the catalog cannot check" in v for v in bad), claim
    listed, _ = checker.check("Return of the Jedi fits your history of Alien, The Anticrus Line and Star Wars.",
                              HISTORY, "rotj")
    assert "names 'The Anticrus Line', which is not in the catalog" in listed
    for span in ("It has been a hit for over two decades.", "Fans have loved it for many years."):
        bad, _ = checker.check(f"Return of the Jedi is sci-fi like Alien. {span}", HISTORY, "rotj")
        assert any("which nothing supports" in v for v in bad), span


def test_true_template_sentences_pass_the_check():
    """No false positives on true text: a title several entries share counts as the one recommended, a short
    title with its year is read as that title, and each year stays with its own title."""
    from recllm.data import Item, ItemCatalog

    catalog = ItemCatalog([Item("1", "Chasing Amy", 1997, ("Drama", "Romance")),
                           Item("2", "Chasing Amy", 1997, ("Drama", "Romance")),
                           Item("3", "Ran", 1985, ("Drama", "War")), Item("4", "Sabrina", 1954, ("Comedy", "Romance")),
                           Item("5", "Sabrina", 1995, ("Comedy", "Romance")), Item("6", "Heat", 1995, ("Action",))])
    checker = ExplanationChecker(catalog)
    text = "Chasing Amy (1997) is Drama like Ran (1985), which you watched."
    assert checker.check(text, ["3"], "2", require_reason=True) == ([], ["2", "3"])
    text = "Sabrina (1995) is Comedy and Romance like Sabrina (1954), which you watched."
    assert checker.check(text, ["4"], "5", require_reason=True) == ([], ["5", "4"])
    for item in ("1", "3", "5"):
        history = [i for i in ("3", "4", "6") if i != item]
        fallback = template_explanation(catalog, history, item)
        assert checker.check(fallback, history, item)[0] == [], fallback
