"""The listwise parser and grounding, driven by a scripted model: every answer shape, every violation counted."""

from __future__ import annotations

import pytest
from rerank_helpers import CANDIDATES, ScriptedLLM, itemlist

from recllm.data import ItemCatalog, ItemList
from recllm.rerank import ListwiseReranker, RerankResult, ground, parse_ranking, summarize_diagnostics

# CANDIDATES (retriever order, shown as [1]..[6]): titanic, godfather, matrix, lion, jurassic, fargo


def run(movies: ItemCatalog, candidates: ItemList, text: str, **options: object) -> RerankResult:
    reranker = ListwiseReranker(ScriptedLLM([text]), movies, **options)  # type: ignore[arg-type]
    return reranker.rerank(["sw", "esb", "rotj"], candidates)


def assert_grounded(result: RerankResult, candidates: ItemList) -> None:
    assert sorted(result.order) == sorted(candidates.items)
    assert len(set(result.order)) == len(result.order) == len(candidates)
    assert result.diagnostics.outside_result == 0
    assert list(result.items.scores) == sorted(result.items.scores, reverse=True)


@pytest.mark.parametrize(("text", "expected", "n_ranked"), [
    ("3\n1\n2", ["matrix", "titanic", "godfather"], 3),
    ("[3]\n#1\n2.\n(6)", ["matrix", "titanic", "godfather", "fargo"], 4),
    ("3, 5 > 1", ["matrix", "jurassic", "titanic"], 3),
    ("1. 4\n2. 2", ["lion", "godfather"], 2),
    ("[5] Jurassic Park (1993); genres: Action, Adventure, Sci-Fi\n[3] The Matrix (1999)", ["jurassic", "matrix"], 2),
])
def test_indices_in_every_shape_are_read(movies: ItemCatalog, candidates: ItemList, text: str, expected: list[str],
                                         n_ranked: int) -> None:
    result = run(movies, candidates, text)
    assert_grounded(result, candidates)
    assert list(result.order[:n_ranked]) == expected
    assert result.n_ranked == n_ranked
    rest = [c for c in CANDIDATES if c not in expected]
    assert list(result.order[n_ranked:]) == rest  # missing ones filled in retriever order
    d = result.diagnostics
    assert (d.missing_filled, d.n_hallucinated, d.duplicates, d.format_errors, d.outputs) == (6 - n_ranked, 0, 0, 0, 1)
    assert d.mentions == n_ranked


def test_titles_with_typos_articles_and_wrong_years_are_matched(movies: ItemCatalog, candidates: ItemList) -> None:
    text = "1. The Matirx (1999)\n2. Titanik\n3. Godfather, The\n4. The Lion King (1993); genres: Crime\n5. \"Fargo\""
    result = run(movies, candidates, text)
    assert_grounded(result, candidates)
    assert list(result.order) == ["matrix", "titanic", "godfather", "lion", "fargo", "jurassic"]
    assert result.diagnostics.n_hallucinated == 0
    assert result.diagnostics.missing_filled == 1


@pytest.mark.parametrize(("text", "expected"), [
    ('{"ranking": [4, 2]}', ["lion", "godfather"]),
    ('```json\n[2, "Fargo", "[3]"]\n```', ["godfather", "fargo", "matrix"]),
    ('Here you are: {"ranking": [6, 5, 4]} -- enjoy!', ["fargo", "jurassic", "lion"]),
    ('{"ranking": [5, 3, 1', ["jurassic", "matrix", "titanic"]),  # cut off by the token limit
    ('{"ranking": [{"index": 2}, {"title": "Titanic"}]}', ["godfather", "titanic"]),
])
def test_json_answers_are_read(movies: ItemCatalog, candidates: ItemList, text: str, expected: list[str]) -> None:
    result = run(movies, candidates, text)
    assert_grounded(result, candidates)
    assert list(result.order[:len(expected)]) == expected
    assert result.n_ranked == len(expected)
    assert result.diagnostics.n_hallucinated == 0
    assert parse_ranking(text, CANDIDATES, [str(i) for i in range(1, 7)], movies).json


def test_prose_and_chain_of_thought_are_read(movies: ItemCatalog, candidates: ItemList) -> None:
    prose = "Since the user loved Star Wars, I would pick The Matrix first, then Jurassic Park, and maybe Fargo."
    result = run(movies, candidates, prose)
    assert list(result.order[:3]) == ["matrix", "jurassic", "fargo"]
    assert result.diagnostics.n_hallucinated == 0  # history titles inside prose are not list entries
    cot = "The user likes space adventures and action.\nThe Godfather is a crime drama.\nAnswer:\n5\n3"
    result = run(movies, candidates, cot)
    assert list(result.order[:2]) == ["jurassic", "matrix"]


def test_out_of_set_references_are_hallucinated_counted_and_never_returned(movies: ItemCatalog,
                                                                           candidates: ItemList) -> None:
    text = "1. Star Wars (1977)\n2. Titanic\n3. Some Film That Does Not Exist (2003)\n4. 9\n5. [Aliens]\n6. Aliens"
    result = run(movies, candidates, text)
    assert_grounded(result, candidates)
    d = result.diagnostics
    # Star Wars is a catalog item (in the history) but no candidate; "Aliens" is not the candidate-free "Alien"
    assert d.hallucinated == ("sw", "Some Film That Does Not Exist (2003)", "9", "aliens", "aliens")
    assert d.mentions == 6
    assert result.order[0] == "titanic" and result.n_ranked == 1
    assert list(result.order[1:]) == [c for c in CANDIDATES if c != "titanic"]
    summary = summarize_diagnostics([d])
    assert summary.hallucination_rate == pytest.approx(5 / 6)
    assert summary.grounded_hallucination_rate == 0.0


def test_repeats_are_duplicates(movies: ItemCatalog, candidates: ItemList) -> None:
    result = run(movies, candidates, "2\n2\n[2] The Godfather (1972)\n1\nTitanic")
    assert_grounded(result, candidates)
    assert list(result.order[:2]) == ["godfather", "titanic"]
    d = result.diagnostics
    assert (d.duplicates, d.mentions, d.n_hallucinated, d.missing_filled) == (3, 5, 0, 4)


@pytest.mark.parametrize("text", ["lorem ipsum dolor sit amet", "", "I cannot help with that request."])
def test_garbage_is_a_format_error_and_the_retriever_order_stands(movies: ItemCatalog, candidates: ItemList,
                                                                  text: str) -> None:
    result = run(movies, candidates, text)
    assert list(result.order) == CANDIDATES
    d = result.diagnostics
    assert (d.format_errors, d.outputs, d.missing_filled, d.mentions, result.n_ranked) == (1, 1, 6, 0, 0)
    assert d.raw_outputs == (text,)


def test_letter_labels_and_indices_resolve(movies: ItemCatalog) -> None:
    parsed = parse_ranking("B, A\n3", ["titanic", "fargo", "matrix"], ["A", "B", "C"], movies)
    assert parsed.items == ("fargo", "titanic", "matrix")
    assert not parsed.format_error


def test_summary_rates_over_several_users(movies: ItemCatalog, candidates: ItemList) -> None:
    answers = ["3\n1", "garbage answer", "2\n2\n1. Star Wars (1977)"]
    llm = ScriptedLLM(answers)
    reranker = ListwiseReranker(llm, movies)
    diags = [reranker.rerank(["sw"], candidates).diagnostics for _ in answers]
    s = summarize_diagnostics(diags)
    assert (s.users, s.outputs, s.format_errors) == (3, 3, 1)
    assert s.format_error_rate == pytest.approx(1 / 3)
    assert (s.mentions, s.hallucinated, s.duplicates) == (5, 1, 1)
    assert s.duplicate_rate == pytest.approx(1 / 5)
    assert s.missing_filled == 4 + 6 + 5
    assert s.missing_rate == pytest.approx(15 / 18)
    assert s.generated_tokens == sum(max(1, len(a) // 4) for a in answers)
    assert s.models == ("fake:scripted",) and s.rerankers == ("listwise",)


def test_the_prompt_asks_for_k_and_the_token_limit_follows(movies: ItemCatalog, candidates: ItemList) -> None:
    llm = ScriptedLLM(["1"])
    reranker = ListwiseReranker(llm, movies, k=3)
    reranker.rerank(["sw"], candidates)
    request = llm.prompts[0]
    assert request.max_new_tokens == 8 + 4 * 3
    assert "top 3 candidates" in (request.messages or ())[-1]["content"]


def test_ground_counts_outside_and_repeats() -> None:
    grounded = ground(["b", "x", "b", "a", "y"], ["a", "b", "c"])
    assert grounded.order == ("b", "a", "c")
    assert (grounded.n_ranked, grounded.duplicates, grounded.outside, grounded.missing_filled) == (2, 1, ("x", "y"), 1)
    assert grounded.outside_result == 0
    assert itemlist(["a"]).items == ("a",)
