"""The service on a server in vLLM's dialect (issue 16): with a plain `--llm openai:URL` the likelihood re-ranker
scores through vLLM's `prompt_logprobs`, rating predicts by scoring, and the chat answers; nothing is configured
beyond the URL, the capabilities are found by asking the server."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from servers import free_port, running_server
from vllm_double import vllm_double


def test_recommend_rerank_rate_and_chat_on_a_vllm_dialect_server(tmp_path: Path, ml100k):
    with vllm_double() as (url, server):
        port = free_port()
        command = [sys.executable, "-m", "recllm", "serve", "--port", str(port), "--db",
                   f"sqlite:///{tmp_path / 's.sqlite'}", "--llm", f"openai:{url}"]
        with running_server(command, port, timeout=180) as base, httpx.Client(base_url=base, timeout=120) as api:
            assert api.get("/health").json()["llm"] == "ready"
            body = api.get("/users/196/recommendations", params={"k": 5, "rerank": "true"}).json()
            assert body["reranked"] is True and len(body["items"]) == 5, body
            rating = api.post("/ratings/predict", json={"user": "196", "item": "50"})
            assert rating.status_code == 200 and 1.0 <= rating.json()["rating"] <= 5.0, rating.text
            chat = api.post("/chat", json={"message": "I loved Alien, something from the 80s"}).json()
            assert chat["action"] == "recommend" and chat["reranked"] is True and not chat["degraded"], chat
        scored = [body for path, body in server.requests if path == "/v1/completions" and "prompt_logprobs" in body]
        assert scored, "the re-ranker did not score through prompt_logprobs"
