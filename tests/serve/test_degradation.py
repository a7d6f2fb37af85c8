"""Honest degradation (issue 15) through real processes: a recllm service on a model server (`recllm llm-serve`
semantics, the real default model) whose server is stopped in the middle of a conversation and started again.
The reply says in words that the model is not answering, /health reports the model's real state (checked, not
remembered) and recovers, and no turn waits on the dead server beyond the configured budget."""

from __future__ import annotations

import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from servers import free_port, running_server

LAUNCHER = ("import sys; from recllm.llm.server import serve_llm; "
            "serve_llm('hf', host='127.0.0.1', port=int(sys.argv[1]), num_threads=1, log_level='warning')")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def model_server(port: int) -> ExitStack:
    stack = ExitStack()
    stack.enter_context(running_server([sys.executable, "-c", LAUNCHER, str(port)], port, env=ENV, timeout=180))
    return stack


def health(api: httpx.Client, llm: str, timeout: float = 30.0) -> dict:
    """/health once it reports ``llm`` (the check is cached for two seconds, a failed load retried after ten)."""
    deadline = time.monotonic() + timeout
    while True:
        body = api.get("/health").json()
        if body["llm"] == llm or time.monotonic() > deadline:
            return dict(body)
        time.sleep(0.5)


def test_a_model_server_stopped_mid_conversation_is_said_and_recovers(tmp_path: Path, ml100k):
    llm_port, port = free_port(), free_port()
    spec = f"openai:http://127.0.0.1:{llm_port}/v1,can_score=true"
    config = tmp_path / "service.toml"
    # the model server's coming and going is tested here, not text vectors or the warm-up
    config.write_text('[service]\nembedder = "none"\nwarm_llm = false\n')
    command = [sys.executable, "-m", "recllm", "serve", "--port", str(port), "--db",
               f"sqlite:///{tmp_path / 'service.sqlite'}", "--llm", spec, "--config", str(config)]
    model = model_server(llm_port)
    try:
        with running_server(command, port, env=ENV, timeout=240) as base, \
                httpx.Client(base_url=base, timeout=120) as api:
            up = health(api, "ready")
            assert up["llm"] == "ready" and up["status"] == "ok" and up["llm_problem"] is None, up
            first = api.post("/chat", json={"message": "I loved Alien, something from the 80s", "user": "v1"})
            assert first.status_code == 200, first.text
            session = first.json()["session_id"]
            assert not first.json()["degraded"] and "not answering" not in first.json()["reply"]

            model.close()  # the model server goes away mid-conversation
            down = health(api, "unavailable")
            assert down["llm"] == "unavailable" and down["status"] == "degraded" and down["llm_problem"], down
            started = time.monotonic()
            second = api.post("/chat", json={"message": "no horror, and nothing before 1982", "user": "v1",
                                             "session_id": session})
            waited = time.monotonic() - started
            assert second.status_code == 200, second.text
            body = second.json()
            assert body["degraded"] and "The language model is not answering" in body["reply"], body
            assert body["action"] == "recommend" and body["state"]["year_min"] == 1982
            assert "Horror" in body["state"]["avoid_genres"] and waited < 15, waited
            failed = api.get("/users/196/recommendations", params={"rerank": "true"})
            assert failed.status_code == 503 and "language model" in failed.json()["error"]
            assert api.get("/users/196/recommendations").status_code == 200  # retrieval does not wait on it

            model = model_server(llm_port)  # the server comes back on the same address
            again = health(api, "ready")
            assert again["status"] == "ok" and again["llm"] == "ready", again
            third = api.post("/chat", json={"message": "something with a bit of comedy", "user": "v1",
                                            "session_id": session}).json()
            assert not third["degraded"] and "not answering" not in third["reply"], third
    finally:
        model.close()
