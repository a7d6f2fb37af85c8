"""The `recllm` command run as a real process: tables, report files, and one-line errors (exit 2)."""

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from servers import free_port, running_server


def recllm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recllm", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_evaluate_writes_json_and_markdown(tmp_path: Path, ml100k):
    proc = recllm("evaluate", "--dataset", "movielens-100k", "--models", "pop,ease", "--k", "10", "--k", "20",
                  "--param", "ease.l2=250", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "NDCG@10" in proc.stdout and "ease" in proc.stdout
    report = json.loads((tmp_path / "movielens-100k-full-leave-one-out.json").read_text())
    assert report["protocol"] == "full" and report["ks"] == [10, 20]
    rows = {row["model"]: row for row in report["rows"]}
    assert rows["ease"]["params"] == {"l2": 250.0}
    assert rows["ease"]["metrics"]["NDCG@20"] >= rows["ease"]["metrics"]["NDCG@10"]
    markdown = (tmp_path / "movielens-100k-full-leave-one-out.md").read_text()
    assert "| ease |" in markdown and "protocol `full`" in markdown and "Command: `recllm evaluate" in markdown


def test_evaluate_with_a_reranker_reports_llm_diagnostics(tmp_path: Path, ml100k):
    proc = recllm("evaluate", "--models", "pop", "--protocol", "sampled-8", "--rerank", "verbalizer", "--users", "3",
                  "--param", "verbalizer.label_style=numbers", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "LLM diagnostics" in proc.stdout and "3 of 943 test users" in proc.stdout
    report = json.loads((tmp_path / "movielens-100k-sampled-8-leave-one-out-rerank.json").read_text())
    rows = {row["model"]: row for row in report["rows"]}
    assert set(rows) == {"random", "pop", "verbalizer"}
    assert rows["verbalizer"]["params"] == {"label_style": "numbers"}
    diagnostics = rows["verbalizer"]["diagnostics"]
    assert diagnostics["users"] == 3 and diagnostics["grounded_hallucination_rate"] == 0.0
    assert diagnostics["models"] == ["hf:SmolLM2-135M-Instruct-Q4_1"]
    assert all(row["n_users"] == 3 for row in rows.values())


def test_fit_then_recommend_round_trip(tmp_path: Path, ml100k):
    assert recllm("fit", "--model", "ease", "--out", str(tmp_path / "m")).returncode == 0
    proc = recllm("recommend", "--model-dir", str(tmp_path / "m"), "--user", "196", "--k", "5", "--json",
                  "--dataset", "movielens-100k")
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert len(records) == 5 and all(r["title"] for r in records)
    seen = set(ml100k.dataset.item_vocab.lookup_ids(ml100k.dataset.sequence(ml100k.dataset.user_vocab.index("196"))))
    assert not seen & {r["item"] for r in records}


def bad_dataset(tmp_path: Path, interactions: str) -> str:
    (tmp_path / "inter.csv").write_text(interactions)
    (tmp_path / "items.csv").write_text("item,title\na,Alpha\nb,Beta\n")
    (tmp_path / "data.toml").write_text('[interactions]\npath = "inter.csv"\n[items]\npath = "items.csv"\n')
    return f"files:{tmp_path / 'data.toml'}"


@pytest.mark.parametrize(("interactions", "fragments"), [
    ("user,item,rating,timestamp\nu1,a,5,1\nu1,b", ("inter.csv:3", "expected 4 fields, found 2", "truncated")),
    ("user,item,timestamp\nu1,a,1\n", ("missing column 'rating'",)),
    ("user,item,rating,timestamp\nu1,a,five,1\n", ("inter.csv:2", "field 'rating'", "'five'")),
])
def test_bad_files_fail_with_one_line(tmp_path: Path, interactions: str, fragments: tuple[str, ...]):
    proc = recllm("evaluate", "--dataset", bad_dataset(tmp_path, interactions), "--models", "pop",
                  "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, *fragments)


def test_unknown_item_is_an_error_in_strict_mode(tmp_path: Path):
    spec = bad_dataset(tmp_path, "user,item,rating,timestamp\nu1,a,5,1\nu1,zzz,4,2\n")
    (tmp_path / "data.toml").write_text('strict = true\n[interactions]\npath = "inter.csv"\n'
                                        '[items]\npath = "items.csv"\n')
    proc = recllm("data", "info", "--dataset", spec)
    assert_one_line_error(proc, "inter.csv:3", "item 'zzz' is not in the item catalog")


@pytest.mark.parametrize(("args", "fragments"), [
    (("evaluate", "--models", "pop,knn"), ("unknown model 'knn'",)),
    (("evaluate", "--models", "ease", "--param", "ease.l3=1"), ("l3: Extra inputs are not permitted",)),
    (("evaluate", "--protocol", "sampled"), ("unknown protocol 'sampled'",)),
    (("evaluate", "--dataset", "movielens-7m"), ("unknown dataset 'movielens-7m'",)),
    (("evaluate", "--rerank", "likelihood"), ("re-rankers are evaluated under sampled-N or rerank-topN",)),
    (("evaluate", "--models", "pop", "--protocol", "rerank-top5", "--k", "5", "--rerank", "likelihood",
      "--param", "likelihood.calibrat=false"), ("re-ranker 'likelihood'", "calibrat")),
    (("recommend", "--model-dir", "/nonexistent"), ("not a saved recllm model",)),
])
def test_bad_arguments_fail_with_one_line(args: tuple[str, ...], fragments: tuple[str, ...], tmp_path: Path):
    assert_one_line_error(recllm(*args, "--out", str(tmp_path)) if args[0] == "evaluate" else recllm(*args),
                          *fragments)


def test_demo_shows_histories_recommendations_and_table(ml100k):
    proc = recllm("demo", "--users", "2")
    assert proc.returncode == 0, proc.stderr
    assert "user 196" in proc.stdout and "top-10 recommendations" in proc.stdout
    assert "NDCG@10" in proc.stdout and "ease" in proc.stdout


def test_llm_serve_starts_an_openai_compatible_server():
    """`recllm llm-serve` answers /health and lists the model at /v1/models, then stops on SIGTERM."""
    port = free_port()
    command = [sys.executable, "-m", "recllm", "llm-serve", "--port", str(port), "--threads", "1"]
    with running_server(command, port) as base:
        models = httpx.get(f"{base}/v1/models", timeout=10).json()
    assert models["object"] == "list" and models["data"][0]["id"]


def test_recommend_with_rerank_and_explain(ml100k):
    proc = recllm("recommend", "--user", "196", "--k", "3", "--rerank", "likelihood", "--candidates", "8",
                  "--explain", "--json")
    assert proc.returncode == 0, proc.stderr
    records = json.loads(proc.stdout)
    assert len(records) == 3 and all(r["explanation"] and r["title"] for r in records)


@pytest.mark.parametrize(("command", "shown"), [
    ("evaluate", "[models.NAME] / [rerankers.NAME]"),
    ("serve", "([service] table)"),
])
def test_help_shows_toml_table_names(command: str, shown: str):
    """Square brackets in help texts are rich markup unless escaped; the table names must survive."""
    proc = recllm(command, "--help")
    assert proc.returncode == 0 and shown in " ".join(proc.stdout.replace("│", " ").split())
