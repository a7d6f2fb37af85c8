"""Retrieval-augmented ranking prompts: each candidate with the shown history items closest to it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recllm.data import ItemCatalog
from recllm.errors import ConfigError
from recllm.prompts import PromptBuilder, PromptConfig
from recllm.prompts.evidence import NearestHistory

# five items on a circle (scaled: only the direction counts): m1 ~ m2 (10 degrees), m3 opposite m1
ANGLES = {"m1": 0.0, "m2": 10.0, "m3": 180.0, "m4": 80.0, "m5": 95.0}


def _cos(a: str, b: str) -> float:
    return float(np.cos(np.deg2rad(ANGLES[a] - ANGLES[b])))


def _space(k: int = 2, min_similarity: float = 0.0) -> NearestHistory:
    ids = list(ANGLES)
    radians = np.deg2rad([ANGLES[i] for i in ids])
    return NearestHistory(ids, np.stack([np.cos(radians), np.sin(radians)], axis=1) * 3.0, k=k,
                          min_similarity=min_similarity)


def test_closest_history_items_by_cosine_closest_first() -> None:
    space = _space(k=2)
    assert space.closest("m1", ["m3", "m4", "m2"]) == ["m2", "m4"]
    assert space.closest("m5", ["m1", "m3", "m4"]) == ["m4", "m3"]  # m1 is at 95 degrees: a negative cosine
    assert _space(k=1).closest("m3", ["m1", "m4", "m5"]) == ["m5"]  # cos(85) > cos(100) > cos(180)
    assert _space(k=3, min_similarity=-1.0).closest("m5", ["m1", "m4"]) == ["m4", "m1"]


def test_unknown_items_the_candidate_itself_and_repeats() -> None:
    space = _space(k=3)
    assert space.closest("new-item", ["m1", "m2"]) == []
    assert space.closest("m1", ["unknown", "m1", "m2"]) == ["m2"]
    assert space.closest("m1", ["m2", "m2", "m2"]) == ["m2"]
    assert space.closest("m1", []) == []


def test_ties_go_to_the_newest_history_item() -> None:
    space = NearestHistory(["a", "b", "c"], np.array([[1.0, 1.0], [1.0, 0.0], [2.0, 0.0]]), k=1)
    assert space.closest("a", ["b", "c"]) == ["c"]  # b and c are equally far from a; c is newer
    assert space.closest("a", ["c", "b"]) == ["b"]


def test_min_similarity_keeps_dissimilar_items_out() -> None:
    assert _space(k=3, min_similarity=0.5).closest("m1", ["m2", "m4", "m3"]) == ["m2"]
    assert _space(k=3, min_similarity=0.99).closest("m3", ["m1", "m4"]) == []


@pytest.mark.parametrize(("ids", "vectors", "options", "message"), [
    (["a", "b"], np.ones((3, 2)), {}, "one vector per item"),
    (["a", "b"], np.ones(2), {}, "one vector per item"),
    (["a", "b"], np.ones((2, 2)), {"k": 0}, "k >= 1"),
    (["a", "b"], np.ones((2, 2)), {"min_similarity": 1.0}, "between -1 and 1"),
    (["a", "b"], np.array([[1.0, np.nan], [1.0, 0.0]]), {}, "NaN"),
    (["a", "a"], np.ones((2, 2)), {}, "appears twice"),
])
def test_bad_spaces_are_refused_naming_the_problem(ids: list[str], vectors: np.ndarray, options: dict[str, float],
                                                   message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NearestHistory(ids, vectors, **options)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([*ANGLES, "unknown"]), max_size=8), st.sampled_from(list(ANGLES)),
       st.integers(min_value=1, max_value=4))
def test_closest_is_a_similarity_ordered_subset_of_the_history(history: list[str], candidate: str, k: int) -> None:
    space = _space(k=k)
    found = space.closest(candidate, history)
    known = {h for h in history if h in ANGLES and h != candidate and _cos(h, candidate) > 1e-6}
    assert len(found) == min(k, len(known)) and len(set(found)) == len(found)
    assert set(found) <= known
    sims = [_cos(f, candidate) for f in found]
    assert sims == sorted(sims, reverse=True)
    assert all(_cos(o, candidate) <= min(sims) + 1e-6 for o in known - set(found))


def _catalog_space(catalog: ItemCatalog, k: int = 1) -> NearestHistory:
    """Vectors by genre: items of one genre are identical, different genres orthogonal."""
    genres = sorted({g for item in catalog for g in item.genres})
    ids = [item.id for item in catalog]
    vectors = np.array([[float(g in catalog[i].genres) for g in genres] for i in ids])
    return NearestHistory(ids, vectors, k=k)


def test_verbalizer_prompt_names_the_closest_shown_history_item(catalog: ItemCatalog) -> None:
    # m1, m6, m11 share a genre (i % 5 == 1); m2 and m7 another; m3 a third
    history = ["m1", "m2", "m3", "m6"]
    plain = PromptBuilder(catalog, "rank-verbalizer").build(history, candidates=["m11", "m7", "m4"])
    prompt = PromptBuilder(catalog, "rank-verbalizer", evidence=_catalog_space(catalog)).build(
        history, candidates=["m11", "m7", "m4"])
    text = prompt.messages[-1]["content"]
    assert f"A. {catalog.describe('m11')} (close to: {catalog['m6'].label()})" in text  # m6 newer than m1
    assert f"B. {catalog.describe('m7')} (close to: {catalog['m2'].label()})" in text
    assert f"C. {catalog.describe('m4')}\n" in text  # nothing of its genre: no evidence, no "close to"
    assert prompt.n_tokens > plain.n_tokens
    assert prompt.messages[-1]["content"].replace(f" (close to: {catalog['m6'].label()})", "").replace(
        f" (close to: {catalog['m2'].label()})", "") == plain.messages[-1]["content"]


def test_evidence_comes_only_from_the_history_the_prompt_shows(catalog: ItemCatalog) -> None:
    builder = PromptBuilder(catalog, "rank-verbalizer", evidence=_catalog_space(catalog), max_history=2)
    prompt = builder.build(["m1", "m2", "m3", "m4"], candidates=["m6", "m8"])
    text = prompt.messages[-1]["content"]
    assert prompt.history == ("m3", "m4")
    assert "close to" not in text.split("Candidates:")[1].splitlines()[1]  # m6's genre mate m1 is not shown
    assert f"(close to: {catalog['m3'].label()})" in text  # m8 ~ m3


def test_listwise_prompts_carry_evidence_and_likelihood_prompts_refuse_it(catalog: ItemCatalog) -> None:
    prompt = PromptBuilder(catalog, "rank-listwise", evidence=_catalog_space(catalog)).build(
        ["m1", "m2"], candidates=["m6", "m3"])
    assert f"[1] {catalog.describe('m6')} (close to: {catalog['m1'].label()})" in prompt.messages[-1]["content"]
    with pytest.raises(ConfigError, match="no candidate lines"):
        PromptBuilder(catalog, "rank-likelihood", evidence=_catalog_space(catalog))
    with pytest.raises(ConfigError, match="evidence must be"):
        PromptBuilder(catalog, "rank-verbalizer", evidence="nearest")  # type: ignore[arg-type]


def test_nearest_history_from_the_pinned_embedder_through_the_config(catalog: ItemCatalog) -> None:
    config = PromptConfig(task="rank-verbalizer", evidence="nearest-history", evidence_k=2)
    builder = PromptBuilder.from_config(config, catalog)
    history = ["m1", "m2", "m3", "m4", "m5"]
    prompt = builder.build(history, candidates=["m6", "m7"])
    lines = prompt.messages[-1]["content"].split("Candidates:\n")[1].splitlines()[:2]
    for line in lines:
        named = line.split("(close to: ")[1].removesuffix(")").split("; ")
        assert len(named) == 2 and {catalog[h].label() for h in history} >= set(named)
    with pytest.raises(ValueError, match="evidence_k"):
        PromptConfig(task="rank-verbalizer", evidence="nearest-history", evidence_k=0)
