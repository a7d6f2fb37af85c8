"""Grammar-constrained decoding on the real default model: the chat's extraction answers are schema-valid JSON on
every one of a fixed set of messages, a choice grammar yields only its choices, and the constrained listwise
re-ranker names only candidates; bad constraints are clear errors."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from fakes import MOVIES, ScriptedLLM
from recllm.chat.extract import EXTRACTION_PROMPT, LLMExtractor, extraction_schema
from recllm.data import Item, ItemCatalog, ItemList
from recllm.llm import LLM
from recllm.llm.base import CapabilityError, GenerationRequest, LLMError
from recllm.rerank import create_reranker

MESSAGES = ("something funny from after 1990", "a scary movie please", "cartoons for my kids",
            "I loved Heat, nothing before 1980", "actually, I didn't like Heat",
            "romantic comedies between 1985 and 1995", "no westerns, I want sci-fi like Alien",
            "my favourites are Toy Story and The Lion King")
GENRES = ("Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Drama", "Horror", "Romance",
          "Sci-Fi", "Thriller", "Western")


def follows(value: Any, schema: dict[str, Any]) -> bool:
    """Whether ``value`` follows ``extraction_schema``'s shape (objects, bounded lists, enums, years or null)."""
    if not isinstance(value, dict) or set(value) != set(schema["required"]):
        return False
    return all(_fits(value[key], rule) for key, rule in schema["properties"].items())


def _fits(item: Any, rule: dict[str, Any]) -> bool:
    if "anyOf" in rule:
        return item is None or (isinstance(item, int) and 1880 <= item <= 2030)
    if not isinstance(item, list) or len(item) > rule["maxItems"]:
        return False
    element = rule["items"]
    if "enum" in element:
        return all(x in element["enum"] for x in item)
    return all(isinstance(x, str) and len(x) <= element["maxLength"] for x in item)


@pytest.fixture(scope="module")
def movies() -> ItemCatalog:
    return ItemCatalog(Item(i, t, y, tuple(g.split("|"))) for i, t, y, g in MOVIES)


def test_every_constrained_extraction_answer_is_schema_valid_json(llm: LLM) -> None:
    schema = extraction_schema(GENRES)
    requests = [GenerationRequest.chat([{"role": "system", "content": EXTRACTION_PROMPT},
                                        {"role": "user", "content": m}], max_new_tokens=160, json_schema=schema)
                for m in MESSAGES]
    answers = llm.generate(requests)
    assert all(a.finish_reason == "stop" for a in answers), [a.text for a in answers]
    assert all(follows(json.loads(a.text), schema) for a in answers), [a.text for a in answers]


def test_the_extractor_asks_for_the_schema_only_where_the_backend_follows_it(llm: LLM, movies: ItemCatalog) -> None:
    assert LLMExtractor(llm, movies).schema is not None
    assert LLMExtractor(llm, movies, constrain=False).schema is None
    assert LLMExtractor(ScriptedLLM([]), movies).schema is None  # a backend without can_schema: parse text


def test_a_choice_grammar_yields_only_its_choices(llm: LLM) -> None:
    grammar = 'start: "Comedy" | "Drama" | "Horror"'
    prompts = ["A film that makes you laugh is a", "A film with ghosts is a", "A sad film about loss is a"]
    answers = llm.generate([GenerationRequest.text(p, max_new_tokens=6, grammar=grammar) for p in prompts])
    assert {a.text for a in answers} <= {"Comedy", "Drama", "Horror"}


def test_the_constrained_listwise_reranker_names_only_candidates(llm: LLM, movies: ItemCatalog) -> None:
    candidates = ItemList(tuple(movies.ids[3:13]), np.linspace(1.0, 0.1, 10))
    for output in ("lines", "json"):
        reranker = create_reranker("listwise", llm, movies, k=5, output=output)
        result = reranker.rerank(movies.ids[:3], candidates)
        assert result.diagnostics.hallucinated == () and result.diagnostics.format_errors == 0
        assert sorted(result.order) == sorted(candidates.items)
    unconstrained = create_reranker("listwise", llm, movies, k=5, constrain=False)
    assert unconstrained.constraint(("1", "2"), 2) == {}


def test_bad_constraints_are_clear_errors(llm: LLM) -> None:
    with pytest.raises(LLMError, match="grammar cannot be compiled"):
        llm.generate([GenerationRequest.text("Hi", max_new_tokens=2, grammar="start: undefined_rule")])
    with pytest.raises(LLMError, match="not both"):
        GenerationRequest.text("Hi", grammar='start: "a"', json_schema={"type": "object"})
    with pytest.raises(CapabilityError, match="cannot constrain output to a grammar"):
        ScriptedLLM(["x"]).generate([GenerationRequest.text("Hi", grammar='start: "a"')])
    plain, constrained = GenerationRequest.text("Hi"), GenerationRequest.text("Hi", grammar='start: "a"')
    assert plain.to_payload() != constrained.to_payload()  # a cached answer never crosses constraints
