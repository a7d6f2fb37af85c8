"""Batch recommendation (issue 16, part 3): every user's top k in shards, the same with or without Ray (a
local Ray that the test starts on loopback), never an item the user already has, written to Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from recllm.cli import app
from recllm.data import DataBundle
from recllm.distributed import check_address, map_shards, ray_session
from recllm.errors import ConfigError
from recllm.eval.batch import batch_recommend, write_parquet
from recllm.models.ease import EASE


@pytest.fixture(scope="module")
def ease(ml100k: DataBundle) -> EASE:
    return EASE(l2=100.0).fit(ml100k.dataset)


def test_batch_equals_recommend_user_by_user(ease: EASE):
    users, items, scores = batch_recommend(ease, 10, shards=3)
    assert len(users) == len(ease.user_vocab) and items.shape == scores.shape == (len(users), 10)
    assert np.all(np.diff(scores, axis=1) <= 0)  # best first
    for row in (0, 1, 200, 942):
        user = ease.user_vocab.id(int(users[row]))
        expected = ease.recommend(user, k=10)
        assert [ease.item_vocab.id(int(i)) for i in items[row]] == list(expected.items)
        assert np.allclose(scores[row], expected.scores, rtol=1e-5)
        assert not set(items[row]) & set(ease.history_of(int(users[row])).tolist())
    one = batch_recommend(ease, 10, shards=1)
    assert np.array_equal(one[1], items) and np.array_equal(one[2], scores)  # sharding changes nothing


def test_parquet_rows_per_user_and_rank(ease: EASE, tmp_path: Path):
    users, items, scores = batch_recommend(ease, 5, users=[0, 5, 9])
    rows = write_parquet(tmp_path / "r.parquet", ease, users, items, scores)
    table = pq.read_table(tmp_path / "r.parquet").to_pydict()
    assert rows == 15 and table["rank"][:5] == [1, 2, 3, 4, 5]
    assert table["user"][:5] == [ease.user_vocab.id(0)] * 5
    assert table["item"][0] == ease.item_vocab.id(int(items[0, 0])) and table["score"][0] == pytest.approx(scores[0, 0])


def test_a_user_with_fewer_unseen_items_than_k_gets_fewer_rows(ease: EASE, tmp_path: Path):
    n = len(ease.item_vocab)
    users, items, scores = batch_recommend(ease, n, users=[0])
    unseen = n - len(set(ease.history_of(0).tolist()))
    assert (items[0] >= 0).sum() == unseen and np.isneginf(scores[0, unseen:]).all()
    assert write_parquet(tmp_path / "all.parquet", ease, users, items, scores) == unseen


def test_bad_arguments_are_named():
    with pytest.raises(ConfigError, match="local, auto or a cluster address"):
        check_address("my cluster")
    assert check_address("10.0.0.5:6379") == "10.0.0.5:6379" and check_address("ray://head:10001")
    with pytest.raises(ConfigError, match="workers must be at least 1"), ray_session("local", workers=0):
        pass


def test_the_same_results_on_a_local_ray(ease: EASE):
    pytest.importorskip("ray")
    plain = batch_recommend(ease, 10, shards=4)
    with ray_session("local", workers=2) as ray:
        assert ray.is_initialized()
        distributed = batch_recommend(ease, 10, shards=4, ray=ray)
        squares = map_shards(lambda x, offset: x * x + offset, [1, 2, 3], shared=(10,), ray=ray)
        node = ray.nodes()[0]["NodeManagerAddress"]
    assert squares == [11, 14, 19]
    assert node == "127.0.0.1"  # loopback only
    for a, b in zip(plain, distributed, strict=True):
        assert np.array_equal(a, b)


def test_cli_batch_recommend_writes_parquet(tmp_path: Path):
    out = tmp_path / "recs.parquet"
    result = CliRunner().invoke(app, ["batch", "recommend", "--model", "pop", "--k", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.num_rows == 943 * 3 and table.column_names == ["user", "rank", "item", "score"]
    bad = CliRunner().invoke(app, ["batch", "recommend", "--ray", "not an address", "--out", str(out)])
    assert bad.exit_code != 0 and "cluster address" in bad.output
