"""Rating prediction: expected rating from digit probabilities (real model), parsed generation (scripted)."""

from __future__ import annotations

import numpy as np
import pytest
from tasks_helpers import SCIFI, ScriptedLLM

from recllm.prompts import as_history
from recllm.tasks import RatingPredictor, TaskError, parse_rating


def test_expected_rating_in_scale_and_follows_history(llm, movies):
    """Same target, a sci-fi fan who rated five sci-fi films 5 vs one who rated them 1.

    With SmolLM2-135M and the default "Rating:" cue we measured 3.89 vs 3.09; the margin asserted (0.2) is
    well inside that. The digits carry little raw probability mass, hence the renormalisation.
    """
    predictor = RatingPredictor(llm, movies)
    batch = predictor.predict_many([([(i, 5) for i in SCIFI], "aliens"), ([(i, 1) for i in SCIFI], "aliens")])
    high, low = batch.predictions
    assert 1.0 <= low <= 5.0 and 1.0 <= high <= 5.0
    assert high > low + 0.2
    assert np.allclose(batch.distributions.sum(axis=1), 1.0)
    assert not np.allclose(batch.distributions[0], batch.distributions[1], atol=0.02)


def test_parse_rating_tolerant():
    assert parse_rating("4") == parse_rating("4").__class__(4.0, False)
    assert parse_rating("Rating: 4/5").value == 4.0 and parse_rating("Rating: 4/5").format_error
    assert parse_rating("I think four stars").value == 4.0
    assert parse_rating("The user will rate").value is None
    assert parse_rating("7 out of 10").value is None


def test_generate_mode_counts_format_errors_and_fallbacks(movies):
    fake = ScriptedLLM(["5", "Probably 4 out of 5.", "The user will rate", "no idea"])
    predictor = RatingPredictor(fake, movies, mode="generate",
                                fallback=lambda user, history, item: 2.5 if user == "u2" else 3.25)
    batch = predictor.predict_many([(["sw"], "esb"), (["sw"], "esb"), ([("sw", 4), ("esb", 2)], "rotj"),
                                    (["sw"], "esb")], users=[None, None, "u2", None])
    assert batch.predictions.tolist() == [5.0, 4.0, 2.5, 3.25]
    assert (batch.format_errors, batch.fallbacks) == (3, 2)
    assert predictor.fallbacks == 2


def test_generate_mode_falls_back_to_user_mean(movies):
    predictor = RatingPredictor(ScriptedLLM(["???"]), movies, mode="generate")
    assert predictor.predict([("sw", 4), ("esb", 2)], "rotj") == pytest.approx(3.0)


def test_expected_mode_needs_scoring(movies):
    with pytest.raises(TaskError, match="mode='generate'"):
        RatingPredictor(ScriptedLLM([]), movies)


def test_expected_on_rendered_prompts_matches_predict_many(llm, movies):
    """``expected`` scores texts rendered elsewhere (held-out ``rate`` examples) exactly as ``predict_many``
    scores the same prompts it builds itself; a generating predictor refuses it."""
    predictor = RatingPredictor(llm, movies)
    pairs = [([(i, 5) for i in SCIFI], "aliens"), ([("sw", 2), ("esb", 3)], "rotj")]
    built = predictor.predict_many(pairs)
    texts = [predictor.builder.build(as_history(h), target=item).render(llm) + predictor.cue for h, item in pairs]
    again = predictor.expected(texts)
    assert np.allclose(again.predictions, built.predictions) and np.allclose(again.digit_mass, built.digit_mass)
    with pytest.raises(TaskError, match="mode='expected'"):
        RatingPredictor(ScriptedLLM([]), movies, mode="generate").expected(texts)
