"""Evaluation in shards of users (issue 16, part 3): the full ranking and LLM re-ranking give the same figures
in shards here and as Ray tasks on a local Ray that the test starts on loopback, each worker loading the
model itself from its spec."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from tests.fakes import ScriptedLLM
from typer.testing import CliRunner

from recllm.cli import app
from recllm.data import DataBundle
from recllm.distributed import ray_session
from recllm.errors import ConfigError
from recllm.eval.protocols import evaluate_full, queries_for_test
from recllm.eval.report import Report
from recllm.eval.runner import RerankerRecipe, make_split, run_evaluation
from recllm.llm.base import Completion, GenerationRequest
from recllm.llm.factory import create_embedder
from recllm.llm.item_text import embed_items, embed_sharded, item_texts
from recllm.models.ease import EASE

WORK_COUNTERS = ("latency", "per_second", "seconds", "tokens", "llm_calls")
"""Diagnostics that count work rather than results: timings, and the tokens read and model calls made, which
depend on what each process's caches held from its earlier users (the model's prefix cache, the likelihood
re-ranker's calibration priors per item)."""


def _figures(report: Report) -> dict[str, Any]:
    """Every row's metrics, user count, breakdowns and diagnostics other than timings (NaN as a string, so
    that equal reports compare equal)."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if not any(t in k for t in WORK_COUNTERS)}
        return "nan" if isinstance(value, float) and np.isnan(value) else value

    return {row.model: plain({"metrics": row.metrics, "users": row.n_users, "diagnostics": row.diagnostics or {},
                              "breakdown": row.breakdown}) for row in report.rows}


def test_full_ranking_in_shards_of_whole_batches_equals_one_pass(ml100k: DataBundle):
    split = make_split(ml100k)
    model = EASE(l2=100.0).fit(split.train)
    queries = queries_for_test(split)
    one = evaluate_full(model, queries, ks=(5, 10), batch_size=100)
    for shards in (2, 3, 7, 50):
        sharded = evaluate_full(model, queries, ks=(5, 10), batch_size=100, shards=shards)
        assert sharded.metrics == one.metrics and sharded.n_users == one.n_users == 943
        for key, values in one.per_user.items():
            assert np.array_equal(sharded.per_user[key], values)
    with pytest.raises(Exception, match="shards must be at least 1"):
        evaluate_full(model, queries, shards=0)


def test_run_evaluation_in_shards_notes_it_and_changes_no_figure(ml100k: DataBundle):
    split = make_split(ml100k)
    plain = run_evaluation(ml100k, ["pop", "ease"], split=split, ks=(5, 10))
    sharded = run_evaluation(ml100k, ["pop", "ease"], split=split, ks=(5, 10), shards=3)
    assert _figures(sharded) == _figures(plain)
    assert any("3 shards" in note for note in sharded.notes) and not any("shards" in n for n in plain.notes)
    with pytest.raises(ConfigError, match="shards must be at least 1"):
        run_evaluation(ml100k, ["pop"], split=split, shards=0)


def test_recipes_name_their_reranker_without_loading_it():
    catalog_free = RerankerRecipe("verbalizer", "hf", catalog=None, options={})  # type: ignore[arg-type]
    assert catalog_free.name == "verbalizer"
    assert RerankerRecipe("likelihood", "hf", None, {}, permutations=3).name == "permutation(likelihood)"  # type: ignore[arg-type]
    assert RerankerRecipe("listwise", "hf", None, {}, permutations=3).report_options() == {"permutations": 3}  # type: ignore[arg-type]
    a, b = RerankerRecipe("listwise", "hf", None, {}), RerankerRecipe("listwise", "hf", None, {})  # type: ignore[arg-type]
    assert a.token != b.token


def test_a_recipe_builds_what_the_unsharded_run_builds(ml100k: DataBundle):
    llm = ScriptedLLM([])
    for name, permutations in (("listwise", 1), ("listwise", 2)):
        recipe = RerankerRecipe(name, llm, ml100k.catalog, {}, permutations=permutations)
        built = recipe.build()
        assert built.name == recipe.name and recipe.build() is built  # built once per process


class _Locked(ScriptedLLM):
    """A model holding a lock: it cannot be pickled, so it cannot reach a Ray worker."""

    def __init__(self) -> None:
        super().__init__([])
        self.guard = threading.Lock()

    def _generate(self, requests: list[GenerationRequest]) -> list[Completion]:  # pragma: no cover
        raise AssertionError("never called")


def test_an_llm_object_that_cannot_travel_is_refused_with_the_way_out(ml100k: DataBundle):
    with pytest.raises(ConfigError, match=r"cannot be sent to other processes.*LLM spec such as 'hf'"):
        RerankerRecipe("listwise", _Locked(), ml100k.catalog, {})
    with pytest.raises(ConfigError, match="listwize"):
        run_evaluation(ml100k, ["pop"], protocol="rerank-top10", rerankers=["listwize"], llm=_Locked(), shards=2,
                       max_users=5)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[ModuleType]:
    """One local Ray on loopback with 2 CPUs for the module's Ray tests."""
    pytest.importorskip("ray")
    with ray_session("local", workers=2) as ray:
        yield ray


def test_llm_reranking_on_a_local_ray_equals_the_run_in_this_process(ml100k: DataBundle, local_ray: ModuleType):
    split = make_split(ml100k)
    # sampled-10 puts every target among the candidates, so the re-ranker's order decides every metric
    options: dict[str, Any] = dict(protocol="sampled-10", ks=(1, 5), split=split, llm="hf", max_users=10,
                                   rerankers=["likelihood"])
    plain = run_evaluation(ml100k, ["pop"], **options)
    distributed = run_evaluation(ml100k, ["pop"], **options, ray=local_ray, shards=3)
    assert [r.model for r in distributed.rows] == [r.model for r in plain.rows] == ["random", "pop", "likelihood"]
    assert _figures(distributed) == _figures(plain)
    llm_row = plain.rows[2]
    assert llm_row.diagnostics["users"] == 10 and 0 < llm_row.metrics["MRR"] < 1  # type: ignore[index]
    assert llm_row.metrics != plain.rows[0].metrics  # the model's order, not the shown one
    assert any("3 shards run as Ray tasks" in note for note in distributed.notes)


def test_cli_evaluate_takes_shards_and_checks_the_ray_address(tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "--models", "pop", "--shards", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "2 shards" in result.output
    bad = CliRunner().invoke(app, ["evaluate", "--models", "pop", "--ray", "my cluster", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "cluster address" in bad.output


def test_item_text_embedding_in_shards_and_on_ray_agrees_with_one_pass(ml100k: DataBundle, local_ray: ModuleType,
                                                                         tmp_path: Path, monkeypatch):
    ids = [str(i) for i in ml100k.dataset.item_vocab.ids[:150]]
    texts = item_texts(ml100k.catalog, ids)
    one = create_embedder("st").embed(texts)
    here = embed_sharded("st", texts, shards=3)
    monkeypatch.setenv("RECLLM_HOME", str(tmp_path))  # a fresh embedding store
    on_ray = embed_items(ml100k.catalog, ids, "st", shards=4, ray=local_ray)
    for vectors in (here, on_ray):
        assert vectors.shape == one.shape == (150, 384) and vectors.dtype == np.float32
        assert np.abs(vectors - one).max() < 1e-5  # each shard batches alone: equal within float rounding
        assert np.array_equal(np.argsort(-(vectors @ one.T), axis=1)[:, :5], np.argsort(-(one @ one.T), axis=1)[:, :5])
    stored = list((tmp_path / "cache" / "embeddings").glob("*.npy"))
    assert len(stored) == 1 and np.array_equal(np.load(stored[0]), on_ray)  # the store the service reads
    with pytest.raises(ConfigError, match="embedder spec"):
        embed_items(ml100k.catalog, ids, create_embedder("st"), ray=local_ray)
    with pytest.raises(ConfigError, match="embedder spec"):  # in shards here, too
        embed_items(ml100k.catalog, ids, create_embedder("st"), shards=2)
    with pytest.raises(ConfigError, match="shards must be at least 1"):
        embed_sharded("st", texts, shards=0)


def test_cli_batch_embed_fills_the_store_and_writes_parquet(tmp_path: Path):
    import pyarrow.parquet as pq

    out = tmp_path / "items.parquet"
    result = CliRunner().invoke(app, ["batch", "embed", "--shards", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "embedded 1,682 items of movielens-100k (384 dims)" in result.output
    table = pq.read_table(out).to_pydict()
    assert len(table["item"]) == 1682 and len(table["vector"][0]) == 384
    assert table["text"][0].startswith("Toy Story (1995)")
    again = CliRunner().invoke(app, ["batch", "embed"])  # read back from the store
    assert again.exit_code == 0, again.output
    bad = CliRunner().invoke(app, ["batch", "embed", "--ray", "my cluster"])
    assert bad.exit_code != 0 and "cluster address" in bad.output


def test_a_single_shard_on_ray_gives_the_figures_of_this_process(ml100k: DataBundle, local_ray: ModuleType):
    answers = ["2\n1\n3"] * 3
    options: dict[str, Any] = dict(protocol="sampled-5", ks=(1,), split=make_split(ml100k), max_users=3,
                                   rerankers=["listwise"])
    plain = run_evaluation(ml100k, ["pop"], **options, llm=ScriptedLLM(answers))
    on_ray = run_evaluation(ml100k, ["pop"], **options, llm=ScriptedLLM(answers), ray=local_ray, shards=1)
    assert _figures(on_ray) == _figures(plain)
    assert on_ray.rows[-1].diagnostics["users"] == 3  # type: ignore[index]
