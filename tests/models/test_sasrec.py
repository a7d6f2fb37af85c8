"""SASRec on a tiny synthetic catalogue where item i is always followed by item i+1 (cyclically)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import fakes
from recllm.data.dataset import Dataset
from recllm.errors import ConfigError
from recllm.models.base import MODEL_REGISTRY, Recommender
from recllm.models.sasrec import SASRec

N_ITEMS = fakes.CYCLE
SMALL = {"max_len": 12, "hidden": 32, "n_blocks": 1, "dropout": 0.1, "lr": 5e-3, "batch_size": 32,
         "epochs": 15, "num_threads": 1}


def cyclic_dataset(n_users: int = 120, length: int = 10, seed: int = 0) -> Dataset:
    return fakes.cyclic_dataset(n_users, length, seed, shuffle=True)


@pytest.fixture(scope="module")
def data() -> Dataset:
    return cyclic_dataset()


@pytest.fixture(scope="module")
def fitted(data: Dataset) -> SASRec:
    return SASRec(**SMALL).fit(data)


def next_item_accuracy(model: SASRec) -> float:
    """Share of short histories (k-2, k-1, k) whose top-scored item is k+1."""
    histories = [np.array([(k - 2) % N_ITEMS, (k - 1) % N_ITEMS, k]) for k in range(N_ITEMS)]
    scores = model.score(np.full(N_ITEMS, -1), histories)
    top = scores.argmax(axis=1)
    return float(np.mean(top == (np.arange(N_ITEMS) + 1) % N_ITEMS))


def test_learns_the_sequential_pattern_and_loss_decreases(fitted: SASRec) -> None:
    assert next_item_accuracy(fitted) == 1.0
    losses = [h["loss"] for h in fitted.history_]
    assert len(losses) == SMALL["epochs"]
    assert losses[-1] < 0.5 * losses[0]
    assert all(h["valid_ndcg"] is None for h in fitted.history_)


def test_recommend_known_user_and_history_excludes_history(fitted: SASRec) -> None:
    result = fitted.recommend(history=["i3", "i4", "i5"], k=5)
    assert result.items[0] == "i6"
    assert not {"i3", "i4", "i5"} & set(result.items)
    assert len(result) == 5
    assert np.all(np.diff(result.scores) <= 0)
    user_seq = fitted.history_of(fitted.user_vocab.index("u0"))  # type: ignore[union-attr]
    expected_next = f"i{(int(user_seq[-1]) + 1) % N_ITEMS}"
    assert fitted.recommend("u0", k=1).items == (expected_next,)


def test_empty_and_long_histories_give_finite_scores(fitted: SASRec) -> None:
    long_history = np.arange(3 * SMALL["max_len"]) % N_ITEMS
    scores = fitted.score(np.array([-1, -1]), [np.zeros(0, dtype=np.int64), long_history])
    assert scores.shape == (2, N_ITEMS) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    assert len(fitted.recommend(history=[], k=3)) == 3
    # only the last max_len items count (batch shape may move the last float bit)
    tail = long_history[-SMALL["max_len"]:]
    np.testing.assert_allclose(fitted.score(np.array([-1]), [tail])[0], scores[1], rtol=1e-5, atol=1e-5)


def test_same_seed_gives_identical_scores(data: Dataset, fitted: SASRec) -> None:
    params = {**SMALL, "epochs": 3}
    first = SASRec(**params).fit(data)
    second = SASRec(**params).fit(data)
    histories = [data.sequence(u) for u in range(5)]
    np.testing.assert_array_equal(first.score(np.arange(5), histories),
                                  second.score(np.arange(5), histories))
    other = SASRec(**{**params, "seed": 1}).fit(data)
    assert not np.array_equal(first.score(np.arange(5), histories), other.score(np.arange(5), histories))


def test_save_load_round_trip(fitted: SASRec, data: Dataset, tmp_path: Path) -> None:
    fitted.save(tmp_path / "model")
    loaded = Recommender.load(tmp_path / "model")
    assert isinstance(loaded, SASRec)
    assert loaded.hyperparameters() == fitted.hyperparameters()
    histories = [data.sequence(u) for u in range(8)] + [np.zeros(0, dtype=np.int64)]
    users = np.arange(9)
    np.testing.assert_array_equal(loaded.score(users, histories), fitted.score(users, histories))
    assert loaded.recommend("u3", k=4) == fitted.recommend("u3", k=4)


def test_sampled_softmax_learns_the_pattern(data: Dataset) -> None:
    model = SASRec(**{**SMALL, "loss": "sampled", "n_negatives": 8}).fit(data)
    assert next_item_accuracy(model) >= 0.9
    assert model.history_[-1]["loss"] < model.history_[0]["loss"]


def test_early_stopping_stops_and_restores_best_weights(data: Dataset) -> None:
    # every validation target is already in its user's training history, so it is excluded and
    # ranked last: NDCG@10 is 0 at every evaluation and never improves after the first one
    valid_rows = np.flatnonzero(np.r_[True, data.users[1:] != data.users[:-1]])
    valid = data.take(valid_rows)
    params = {**SMALL, "epochs": 15, "patience": 3}
    model = SASRec(**params).fit(data, valid)
    assert [h["epoch"] for h in model.history_] == [1, 2, 3, 4]
    assert all(h["valid_ndcg"] == 0.0 for h in model.history_)
    assert all(h["seconds"] > 0 for h in model.history_)
    assert model.best_epoch_ == 1
    one_epoch = SASRec(**{**params, "epochs": 1}).fit(data)
    histories = [data.sequence(u) for u in range(6)]
    np.testing.assert_array_equal(model.score(np.arange(6), histories),
                                  one_epoch.score(np.arange(6), histories))


def test_validation_ndcg_is_recorded_every_eval_every_epochs(data: Dataset) -> None:
    # hold out each user's newest item; the model should predict it well
    last = data.sequence_indptr[1:] - 1
    rows = np.asarray(data.time_order)[last]
    keep = np.ones(len(data), dtype=bool)
    keep[rows] = False
    train, valid = data.take(np.flatnonzero(keep)), data.take(rows)
    model = SASRec(**{**SMALL, "epochs": 6, "eval_every": 3, "patience": 5}).fit(train, valid)
    recorded = [h["epoch"] for h in model.history_ if h["valid_ndcg"] is not None]
    assert recorded == [3, 6]
    assert model.history_[-1]["valid_ndcg"] > 0.5


def test_config_is_validated() -> None:
    assert MODEL_REGISTRY["sasrec"] is SASRec
    with pytest.raises(ConfigError, match="hiden"):
        SASRec.from_config({"hiden": 32})
    with pytest.raises(ConfigError, match="loss"):
        SASRec.from_config({"loss": "bpr"})
    with pytest.raises(ConfigError, match="n_heads"):
        SASRec(hidden=30, n_heads=4)
    assert SASRec.from_config({"hidden": 32}).hidden == 32


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU fallback of a GPU-saved model")
def test_a_model_saved_on_a_gpu_loads_on_a_cpu_machine(fitted: SASRec, data: Dataset, tmp_path: Path) -> None:
    folder = fitted.save(tmp_path / "model")
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["hyperparameters"]["device"] = "cuda:0"
    config_path.write_text(json.dumps(config))
    loaded = Recommender.load(folder)
    users = np.arange(4)
    histories = [data.sequence(u) for u in range(4)]
    np.testing.assert_array_equal(loaded.score(users, histories), fitted.score(users, histories))


@pytest.mark.parametrize("tasks", ["mbp", "nbp", "both"])
def test_ptum_pretraining_lowers_its_losses_and_the_model_still_learns(data: Dataset, tasks: str) -> None:
    model = SASRec(**{**SMALL, "epochs": 8, "pretrain": tasks, "pretrain_epochs": 6}).fit(data)
    history = model.pretrain_history_
    assert [h["pretrain_epoch"] for h in history] == list(range(1, 7))
    for task in (["mbp", "nbp"] if tasks == "both" else [tasks]):
        assert history[-1][f"{task}_loss"] < history[0][f"{task}_loss"]
    assert next_item_accuracy(model) >= 0.9
    again = SASRec(**{**SMALL, "epochs": 8, "pretrain": tasks, "pretrain_epochs": 6}).fit(data)
    histories = [data.sequence(u) for u in range(4)]
    np.testing.assert_array_equal(model.score(np.arange(4), histories), again.score(np.arange(4), histories))


def test_ptum_pretraining_alone_teaches_the_encoder_the_pattern(data: Dataset) -> None:
    """Next-k prediction's first offset is the next item: after pre-training only (one fine-tuning epoch at a
    tiny learning rate), the encoder already predicts far above chance (1 in 20)."""
    untrained = SASRec(**{**SMALL, "epochs": 1, "lr": 1e-6}).fit(data)
    pretrained = SASRec(**{**SMALL, "epochs": 1, "lr": 1e-6, "pretrain": "nbp", "pretrain_epochs": 10,
                           "pretrain_lr": 5e-3}).fit(data)
    assert next_item_accuracy(untrained) <= 0.2
    assert next_item_accuracy(pretrained) >= 0.9


def test_ptum_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="pretrain"):
        SASRec.from_config({"pretrain": "bert"})
    with pytest.raises(ConfigError, match="mask_share"):
        SASRec(pretrain="mbp", mask_share=1.5)
    with pytest.raises(ConfigError, match="next_k"):
        SASRec(pretrain="nbp", next_k=0)
