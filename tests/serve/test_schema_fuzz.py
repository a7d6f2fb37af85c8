"""Schemathesis against the service's own OpenAPI schema (issue 16): generated requests to every operation,
valid and not, through a real HTTP server with a model that answers at once, and no answer is a 5xx. The
failures it found when first run (a non-JSON body answered 500, a rating given with kind 'like' answered
503) are fixed as classes: non-JSON bodies get 415, inconsistent feedback 400."""

from __future__ import annotations

import re
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from recllm.data import DataBundle
from recllm.llm.base import LLM, Completion, GenerationRequest
from recllm.pipeline import PipelineConfig, RetrieverConfig
from recllm.serve.service import Service, ServiceConfig
from recllm.serve.storage import Store
from servers import serving_in_process

pytest.importorskip("schemathesis")


class QuickLLM(LLM):
    """Scores by a hash of the text and answers every generation with an empty preference object: fast and
    deterministic, so the fuzzer reaches the re-ranking, rating and explanation paths."""

    backend = "fake"

    def __init__(self) -> None:
        super().__init__("quick")

    @property
    def can_score(self) -> bool:
        return True

    def _generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        return [Completion(text='{"liked": [], "genres": []}', finish_reason="stop", prompt_tokens=10,
                           completion_tokens=8) for _ in requests]

    def _logprobs(self, prompt: str, continuations: list[str]) -> np.ndarray:
        return np.array([-(zlib.crc32((prompt + c).encode()) % 1000) / 100 for c in continuations])

    def _next_token_logprobs(self, prompt: str, tokens: list[str]) -> np.ndarray:
        return self._logprobs(prompt, tokens)


def test_no_generated_request_gets_a_server_error(ml100k: DataBundle, tmp_path: Path):
    config = ServiceConfig(pipeline=PipelineConfig(retriever=RetrieverConfig(params={"l2": 100.0})), embedder="none")
    service = Service.start(config, Store(f"sqlite:///{tmp_path / 's.sqlite'}"), data=ml100k, llm=QuickLLM())
    with serving_in_process(service) as api:
        run = subprocess.run([sys.executable, "-m", "schemathesis.cli", "run", f"{api.base_url}/openapi.json",
                              "--checks", "not_a_server_error", "--max-examples", "40", "--seed", "7",
                              "--request-timeout", "60", "--no-color"],
                             capture_output=True, text=True, timeout=900, cwd=tmp_path)
    summary = run.stdout[-4000:]
    assert run.returncode == 0, summary
    selected = re.search(r"Selected: (\d+)/(\d+)", summary)
    tested = re.search(r"Tested: (\d+)", summary)
    assert selected and tested and int(tested.group(1)) == int(selected.group(2)) >= 15, summary  # every operation
    cases = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert cases and int(cases.group(1)) == int(cases.group(2)) > 500, summary
