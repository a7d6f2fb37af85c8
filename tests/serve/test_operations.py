"""Operations (issue 16): Prometheus metrics by route template, the optional API key for writes and admin
routes, configurable CORS and the body limit, through a real HTTP server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from recllm.data import DataBundle
from recllm.pipeline import PipelineConfig, RetrieverConfig
from recllm.serve.service import Service, ServiceConfig
from recllm.serve.storage import Store
from servers import serving_in_process

KEY = "test-key-0123456789"


@contextmanager
def serving(data: DataBundle, tmp_path: Path, **settings: object) -> Iterator[httpx.Client]:
    config = ServiceConfig(pipeline=PipelineConfig(retriever=RetrieverConfig(params={"l2": 100.0}), llm="none",
                                                   reranker=None), embedder="none", **settings)  # type: ignore[arg-type]
    service = Service.start(config, Store(f"sqlite:///{tmp_path / 's.sqlite'}"), data=data)
    with serving_in_process(service) as client:
        yield client


def test_metrics_count_requests_by_route_template(ml100k: DataBundle, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("RECLLM_API_KEY", raising=False)
    with serving(ml100k, tmp_path) as api:
        for user in ("196", "186", "22"):
            assert api.get(f"/users/{user}/recommendations", params={"k": 3}).status_code == 200
        assert api.get("/items/zzz").status_code == 404
        assert api.get("/no/such/route").status_code == 404
        text = api.get("/metrics").text
    assert 'recllm_requests_total{route="/users/{user}/recommendations",method="GET",status="200"} 3' in text
    assert 'recllm_requests_total{route="/items/{item}",method="GET",status="404"} 1' in text
    assert 'route="(unmatched)"' in text and "196" not in text  # ids never become labels
    buckets = re.findall(r'recllm_request_seconds_bucket\{route="/users/\{user\}/recommendations",le="[^"]+"\} (\d+)',
                         text)
    assert buckets and [int(b) for b in buckets] == sorted(int(b) for b in buckets) and int(buckets[-1]) == 3


def test_the_api_key_guards_writes_and_admin_routes_only(ml100k: DataBundle, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("RECLLM_API_KEY", raising=False)
    feedback = {"user": "visitor", "item": "50", "kind": "like"}
    with serving(ml100k, tmp_path, api_key=KEY) as api:
        refused = api.post("/feedback", json=feedback)
        assert refused.status_code == 401 and "API key" in refused.json()["error"]
        wrong = {"Authorization": "Bearer wrong-key-000"}
        assert api.post("/feedback", json=feedback, headers=wrong).status_code == 401
        assert api.post("/feedback", json=feedback, headers={"Authorization": f"Bearer {KEY}"}).status_code == 201
        assert api.post("/feedback", json=feedback, headers={"X-API-Key": KEY}).status_code == 201
        assert api.post("/items", json={"title": "A New Film"}).status_code == 401
        assert api.get("/metrics").status_code == 401 and api.get("/metrics", headers={"X-API-Key": KEY}).is_success
        assert api.get("/users/visitor/recommendations").status_code == 200  # reads stay open
        assert api.post("/chat", json={"message": "something funny"}).status_code == 200
        large = api.post("/feedback", content=b"x" * 70_000, headers={"X-API-Key": KEY, "content-type": "text/plain"})
        assert large.status_code == 413


@pytest.mark.parametrize(("origin", "allowed"), [("http://shop.example", True), ("http://evil.example", False)])
def test_cors_follows_the_configured_origins(ml100k: DataBundle, tmp_path: Path, origin: str, allowed: bool):
    with serving(ml100k, tmp_path, cors_origins=["http://shop.example"]) as api:
        answer = api.options("/recommendations", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert (answer.headers.get("access-control-allow-origin") == origin) is allowed


def test_bodies_must_be_json_and_feedback_consistent(ml100k: DataBundle, tmp_path: Path, monkeypatch):
    """Classes the schema fuzzer found: a non-JSON body was a 500, a rating with kind 'like' a 503."""
    monkeypatch.delenv("RECLLM_API_KEY", raising=False)
    with serving(ml100k, tmp_path) as api:
        plain = api.post("/recommendations", content=b'{"history": [], "k": 3}', headers={"content-type": "text/plain"})
        assert plain.status_code == 415 and "application/json" in plain.json()["error"]
        form = api.post("/feedback", content=b"user=a&item=50",
                        headers={"content-type": "application/x-www-form-urlencoded"})
        assert form.status_code == 415
        typed = api.post("/recommendations", json={"history": [], "k": 3},
                         headers={"content-type": "application/json; charset=utf-8"})
        assert typed.status_code == 200
        mixed = api.post("/feedback", json={"user": "v", "item": "50", "kind": "like", "rating": 4})
        assert mixed.status_code == 400 and "kind 'rating'" in mixed.json()["error"]
        missing = api.post("/feedback", json={"user": "v", "item": "50", "kind": "rating"})
        assert missing.status_code == 400 and "needs a rating" in missing.json()["error"]
        broken = api.post("/recommendations", content=b"\xff\xfe not json",
                          headers={"content-type": "application/json"})
        assert broken.status_code in (400, 422) and broken.json()["error"]


def test_audit_serves_the_latest_published_audit_of_its_retriever(ml100k: DataBundle, tmp_path: Path, monkeypatch):
    import recllm.eval.audit_report
    from recllm.eval.audit_report import publish_audit

    monkeypatch.delenv("RECLLM_API_KEY", raising=False)
    monkeypatch.setattr(recllm.eval.audit_report, "audits_dir", lambda: tmp_path / "audits")
    with serving(ml100k, tmp_path) as api:
        missing = api.get("/audit")
        assert missing.status_code == 404
        assert "recllm audit --dataset movielens-100k --models ease" in missing.json()["error"]
        written = tmp_path / "out"
        written.mkdir()
        paths = (written / "a.json", written / "a.md", written / "a.html")
        paths[0].write_text('{"users": 943}')
        paths[1].write_text("# audit")
        paths[2].write_text("<html><body><h1>audit of ease</h1></body></html>")
        publish_audit(paths, "movielens-100k", ["pop", "ease"])
        page = api.get("/audit")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "audit of ease" in page.text and page.headers["cache-control"] == "no-cache"
        assert api.get("/audit.json").json() == {"users": 943}
        paths[2].write_text("<html><body><h1>a newer audit</h1></body></html>")
        publish_audit(paths, "movielens-100k", ["ease"])
        assert "a newer audit" in api.get("/audit").text  # read as published, never computed per request
