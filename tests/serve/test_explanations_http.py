"""Explanations that are true, through a real HTTP server (issue 15): a model that writes the nonsense seen in
the service ("The user's favorite movie is 10.", a dystopian future for an adventure film) is never shown as
checked; the grounded template is shown instead, and a true explanation passes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import httpx

from recllm.data import DataBundle
from recllm.llm.base import LLM, Completion, GenerationRequest
from recllm.pipeline import PipelineConfig, RetrieverConfig
from recllm.serve.service import Service, ServiceConfig
from recllm.serve.storage import Store
from servers import serving_in_process


class Repeating(LLM):
    """Answers every request with ``texts`` in turn, forever (it cannot score)."""

    backend = "fake"

    def __init__(self, texts: Sequence[str]) -> None:
        super().__init__("repeating")
        self.texts = list(texts)
        self.calls = 0

    def _generate(self, requests: list[GenerationRequest]) -> list[Completion]:
        out = []
        for _ in requests:
            text = self.texts[self.calls % len(self.texts)]
            self.calls += 1
            out.append(Completion(text=text, finish_reason="stop", prompt_tokens=50, completion_tokens=12))
        return out


@contextmanager
def serving(llm: LLM, data: DataBundle, tmp_path) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    config = ServiceConfig(pipeline=PipelineConfig(retriever=RetrieverConfig(params={"l2": 100.0}), reranker=None),
                           embedder="none")
    service = Service.start(config, Store(f"sqlite:///{tmp_path / 's.sqlite'}"), data=data, llm=llm)
    with serving_in_process(service) as client:
        yield client


def test_nonsense_is_never_shown_as_checked(ml100k: DataBundle, tmp_path):
    nonsense = ["The user's favorite movie is 10.",
                "Raiders of the Lost Ark is a classic action adventure film set in a dystopian future.",
                "It is a great film that everyone should see."]
    with serving(Repeating(nonsense), ml100k, tmp_path) as api:
        for _ in nonsense:
            body = api.get("/users/196/explanations/174").json()  # Raiders of the Lost Ark
            assert body["grounded"] is False and body["fallback_used"] is True, body
            assert "Raiders of the Lost Ark (1981)" in body["text"] and body["violations"], body
        listed = api.get("/users/196/recommendations", params={"k": 3, "explain": "true"}).json()["items"]
        assert all(item["reason_checked"] is False for item in listed)


def test_a_true_explanation_is_shown_as_checked(ml100k: DataBundle, tmp_path):
    dataset = ml100k.dataset
    history = set(dataset.item_vocab.lookup_ids(dataset.sequence(dataset.user_vocab.index("196"))))
    assert "393" in history  # Mrs. Doubtfire (1993), Comedy
    true = "Like Mrs. Doubtfire (1993), which you watched, Toy Story (1995) is a comedy."
    with serving(Repeating([true]), ml100k, tmp_path) as api:
        body = api.get("/users/196/explanations/1").json()
        assert body["grounded"] is True and body["text"] == true and set(body["cited"]) == {"1", "393"}, body
