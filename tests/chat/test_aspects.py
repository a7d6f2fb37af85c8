"""Decision support: every aspect's score and reason come from the data, and pros and cons follow the scores."""

from __future__ import annotations

import numpy as np
import pytest

from recllm.chat import AspectAnalyzer
from recllm.data import DataBundle
from recllm.errors import RecllmError
from recllm.models.registry import create_model


@pytest.fixture(scope="module")
def analyzer(ml100k: DataBundle) -> AspectAnalyzer:
    return AspectAnalyzer(ml100k, create_model("ease", {"l2": 100.0}).fit(ml100k.dataset))


def history_of(data: DataBundle, user: str) -> list[str]:
    return data.dataset.item_vocab.lookup_ids(data.dataset.sequence(data.dataset.user_vocab.index(user)))


def test_aspects_are_computed_from_the_data(analyzer: AspectAnalyzer, ml100k: DataBundle):
    history = history_of(ml100k, "196")
    report = analyzer.analyze(history, "1")  # Toy Story (1995): Animation, Children's, Comedy
    aspects = {a.name: a for a in report.aspects}
    assert list(aspects) == ["genre", "era", "similar", "collaborative", "popularity"]
    assert all(0.0 <= a.score <= 1.0 for a in report.aspects)
    comedies = sum("Comedy" in ml100k.catalog[h].genres for h in history[-50:])
    assert f"Comedy ({comedies})" in aspects["genre"].reason
    users = int(ml100k.dataset.item_popularity[ml100k.dataset.item_vocab.index("1")])
    assert f"watched by {users} of 943 users" in aspects["popularity"].reason
    years = [ml100k.catalog[h].year for h in history]
    assert f"median {int(np.median(years))}" in aspects["era"].reason and aspects["era"].score == 1.0
    assert report.title == "Toy Story (1995)"
    weights = sum(a.weight for a in report.aspects)
    assert report.score == pytest.approx(sum(a.score * a.weight for a in report.aspects) / weights)
    assert set(report.pros) == {a.reason for a in report.aspects if a.score >= 0.6}
    assert set(report.cons) == {a.reason for a in report.aspects if a.score <= 0.3}


def test_a_good_match_beats_an_obscure_one(analyzer: AspectAnalyzer, ml100k: DataBundle):
    history = history_of(ml100k, "196")
    good, obscure = analyzer.analyze(history, "1"), analyzer.analyze(history, "1500")
    assert good.score > obscure.score
    collaborative = {a.name: a for a in obscure.aspects}["collaborative"]
    assert "bottom" in collaborative.reason and collaborative.score < 0.5


def test_similarity_cites_an_item_the_user_liked(analyzer: AspectAnalyzer, ml100k: DataBundle):
    liked = ["50", "181"]  # Star Wars, Return of the Jedi
    report = analyzer.analyze(["50", "181", "1"], "172", liked=liked)  # The Empire Strikes Back
    similar = {a.name: a for a in report.aspects}["similar"]
    assert similar.score > 0.6 and ("Star Wars (1977)" in similar.reason or "Return of the Jedi" in similar.reason)
    nothing = analyzer.analyze(["50"], "172", liked=[])
    assert {a.name: a for a in nothing.aspects}["similar"].reason == "nothing you liked to compare with"


def test_cold_start_and_bad_items(analyzer: AspectAnalyzer):
    report = analyzer.analyze([], "50")
    aspects = {a.name: a for a in report.aspects}
    assert aspects["genre"].reason == "no history to compare genres with" and aspects["genre"].score == 0.5
    with pytest.raises(RecllmError, match="unknown item 'zzz'"):
        analyzer.analyze(["50"], "zzz")
