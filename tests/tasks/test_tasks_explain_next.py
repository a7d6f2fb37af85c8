"""Explanations cite only history and the item (checked, with fallback); zero-shot next-item is grounded."""

from __future__ import annotations

from tasks_helpers import ScriptedLLM

from recllm.tasks import Explainer, ExplanationChecker, TitleScanner, ZeroShotNextItem

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
