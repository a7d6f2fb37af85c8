"""`recllm train ...` as a real process on a small file dataset: semantic ids, TIGER, a LoRA adapter that the
re-rankers then load, and one-line errors for bad options."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

GENRES = ("Comedy", "Drama", "Horror", "Western")


def recllm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "recllm", *args], capture_output=True, text=True, timeout=900,
                          check=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    """24 films in four genres; 40 users who each walk a genre's films in order (rated 5, one 2 per user)."""
    root = tmp_path_factory.mktemp("files")
    items = ["item,title,year,genres"]
    items += [f"m{i},Film number {i},{1950 + 2 * i},{GENRES[i % 4]}" for i in range(24)]
    (root / "items.csv").write_text("\n".join(items) + "\n")
    rng = np.random.default_rng(0)
    rows = ["user,item,rating,timestamp"]
    for user in range(40):
        genre = user % 4
        films = [i for i in range(24) if i % 4 == genre] + [int(i) for i in rng.choice(24, size=3, replace=False)
                                                            if i % 4 != genre]
        for t, film in enumerate(dict.fromkeys(films)):
            rows.append(f"u{user},m{film},{2 if t == 1 else 5},{1000 + 10 * t}")
    (root / "inter.csv").write_text("\n".join(rows) + "\n")
    (root / "data.toml").write_text('name = "tiny-films"\n[interactions]\npath = "inter.csv"\n'
                                    '[items]\npath = "items.csv"\nyear = "year"\ngenres = "genres"\n')
    return f"files:{root / 'data.toml'}"


def test_semantic_ids_then_tiger_report_stats_metrics_and_zero_invalid(dataset: str, tmp_path: Path) -> None:
    ids = recllm("train", "semantic-ids", "--dataset", dataset, "--levels", "2", "--codebook-size", "4",
                 "--out", str(tmp_path / "ids"))
    assert ids.returncode == 0, ids.stderr
    assert "collision rate" in ids.stdout and "codes used" in ids.stdout
    meta = json.loads((tmp_path / "ids" / "semantic_ids.json").read_text())
    assert len(meta["item_ids"]) == 24 and meta["codebook_size"] == 4

    proc = recllm("train", "tiger", "--dataset", dataset, "--out", str(tmp_path / "tiger"), "-p", "epochs=4",
                  "-p", "hidden=32", "-p", "ff_dim=64", "-p", "levels=2", "-p", "codebook_size=4",
                  "-p", "beam_size=12", "-p", f"semantic_ids_dir={tmp_path / 'ids'}")
    assert proc.returncode == 0, proc.stderr
    assert "invalid generations 0" in proc.stdout and "NDCG@10" in proc.stdout
    evaluation = json.loads((tmp_path / "tiger" / "evaluation.json").read_text())
    assert evaluation["protocol"] == "full" and evaluation["n_users"] == 40
    assert 0.0 <= evaluation["metrics"]["NDCG@10"] <= evaluation["metrics"]["HR@10"] <= 1.0
    assert len(evaluation["history"]) >= 1
    assert (tmp_path / "tiger" / "semantic-ids" / "semantic_ids.json").exists()


def test_train_lm_writes_an_adapter_the_rerankers_load(dataset: str, tmp_path: Path) -> None:
    out = tmp_path / "lm"
    proc = recllm("train", "lm", "--dataset", dataset, "--tasks", "next,rank,rate", "--max-examples", "6",
                  "--max-steps", "2", "--batch-size", "4", "--out", str(out), "-o", "lora.eval_fraction=0.3",
                  "-o", "lora.num_threads=2", "-o", "data.n_candidates=4", "--negatives-from", "itemknn",
                  "-o", "retriever.neighbors=10")
    assert proc.returncode == 0, proc.stderr
    assert "next 6, rank 6, rate 6" in proc.stdout and "train loss" in proc.stdout
    record = json.loads((out / "recllm-train.json").read_text())
    assert record["tasks"] == {"next": 6, "rank": 6, "rate": 6} and record["result"]["steps"] == 2
    assert (out / "adapter_model.safetensors").exists()

    rec = recllm("recommend", "--dataset", dataset, "--user", "u0", "--k", "3", "--rerank", "likelihood",
                 "--candidates", "5", "--llm", f"hf:{out}", "--json")
    assert rec.returncode == 0, rec.stderr
    assert len(json.loads(rec.stdout)) == 3

    again = recllm("train", "lm", "--dataset", dataset, "--tasks", "next", "--max-examples", "2",
                   "--max-steps", "1", "--out", str(out))
    assert again.returncode == 2 and "overwrite" in again.stderr and "Traceback" not in again.stderr


def test_train_distill_writes_a_student_that_recommends_with_no_language_model(dataset: str, tmp_path: Path) -> None:
    out = tmp_path / "student"
    proc = recllm("train", "distill", "--dataset", dataset, "--model", "itemknn", "-p", "neighbors=10",
                  "--users", "12", "--candidates", "6", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "lists judged" in proc.stdout and "held-out Spearman" in proc.stdout
    record = json.loads((out / "student.json").read_text())
    assert len(record["items"]) == 24 and record["info"]["teacher"] == "verbalizer"
    assert record["info"]["report"]["lists"] == 12
    rec = recllm("recommend", "--dataset", dataset, "--user", "u0", "--k", "3", "--model", "itemknn",
                 "-p", "neighbors=10", "--rerank", "distilled", "-p", f"distilled.path={out}", "--candidates", "6",
                 "--llm", "none", "--json")
    assert rec.returncode == 0, rec.stderr
    assert len(json.loads(rec.stdout)) == 3


@pytest.mark.parametrize(("args", "fragment"), [
    (("--naming", "semantic"), "--naming semantic needs --semantic-ids"),
    (("--tasks", "next,guess"), "unknown instruction task 'guess'"),
    (("--llm", "openai:http://127.0.0.1:9/v1"), "LoRA tuning needs a transformers model"),
    (("-o", "model.r=4"), "use data.KEY, lora.KEY or retriever.KEY"),
    (("-o", "retriever.neighbors=4"), "name it with --negatives-from MODEL"),
    (("--negatives-from", "nosuchmodel"), "unknown model 'nosuchmodel'"),
    (("-o", "data.n_candidatez=4"), "n_candidatez"),
])
def test_bad_train_options_fail_with_one_line(dataset: str, tmp_path: Path, args: tuple[str, ...],
                                              fragment: str) -> None:
    proc = recllm("train", "lm", "--dataset", dataset, "--out", str(tmp_path / "x"), *args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and fragment in proc.stderr, proc.stderr
