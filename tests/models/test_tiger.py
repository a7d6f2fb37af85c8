"""The code trie, constrained beam search, and TIGER trained on a tiny catalogue where item i is followed by i+1."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

import fakes
from recllm.data import Item, ItemCatalog
from recllm.data.dataset import Dataset
from recllm.errors import ConfigError
from recllm.models.base import MODEL_REGISTRY, Recommender
from recllm.models.tiger import NOT_GENERATED, TIGER
from recllm.models.trie import CodeTrie, StepFunction, constrained_beam_search
from recllm.train.semantic_ids import SemanticIds, build_semantic_ids

# ---- trie and beam search ---------------------------------------------------------------------------------
CODES = np.array([[0, 1, 0], [0, 1, 1], [0, 2, 0], [2, 0, 0], [2, 2, 0]])
"""Five items over levels of sizes 3, 3, 2; prefixes (1,), (0, 0), (2, 1) and many more are invalid."""


def test_trie_accepts_exactly_the_prefixes_of_items() -> None:
    trie = CodeTrie(CODES)
    assert trie.level_sizes == (3, 3, 2)
    valid = {tuple(row[:t]) for row in CODES.tolist() for t in range(4)}
    for length in range(4):
        for prefix in itertools.product(range(3), repeat=length):
            assert trie.is_valid_prefix(prefix) == (prefix in valid), prefix
    assert [trie.item_of(row) for row in CODES] == [0, 1, 2, 3, 4]
    assert trie.item_of((0, 1)) is None and trie.item_of((0, 0, 0)) is None and trie.item_of((9, 9, 9)) is None
    np.testing.assert_array_equal(trie.allowed(()), [0, 2])
    np.testing.assert_array_equal(trie.allowed((0, 1)), [0, 1])
    assert len(trie.allowed((1,))) == 0
    with pytest.raises(ConfigError, match="share a code tuple"):
        CodeTrie(np.array([[0, 1], [0, 1]]))


def scripted_step(prefer_invalid: bool) -> tuple[list[int], StepFunction]:
    """A step function that puts most probability on invalid codes (code 1 first, code 0 after (0,)) and
    otherwise fixed, distinct log-probs; it records every row count it was asked for."""
    calls: list[int] = []

    def step(rows: np.ndarray, prefix: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        t = prefix.shape[1]
        logits = np.tile(np.array([0.3, -0.2, 0.1]) * (t + 1), (len(rows), 1))
        if prefer_invalid and t == 0:
            logits[:, 1] = 5.0
        if prefer_invalid and t == 1:
            logits[prefix[:, 0] == 0, 0] = 5.0
        return logits - np.log(np.exp(logits).sum(1, keepdims=True))

    return calls, step


def brute_force(step: StepFunction, codes: np.ndarray) -> list[tuple[float, int]]:
    """(log-prob, item) of every item, best first: the sum of the step's log-probs along its codes."""
    out = []
    for item, row in enumerate(codes):
        total = sum(float(step(np.zeros(1, dtype=np.int64), row[None, :t])[0, row[t]]) for t in range(len(row)))
        out.append((total, item))
    return sorted(out, key=lambda pair: (-pair[0], pair[1]))


def test_constrained_beam_search_only_returns_items_even_when_the_model_prefers_invalid_codes() -> None:
    trie = CodeTrie(CODES)
    _, step = scripted_step(prefer_invalid=True)
    result = constrained_beam_search(step, trie, n_queries=2, beam_size=5)
    assert result.invalid == 0
    assert result.masked_preferences > 0  # the model's own favourite was invalid and got masked
    expected = brute_force(step, CODES)
    for q in range(2):
        assert result.items[q].tolist() == [item for _, item in expected]  # exhaustive beam = exact ranking
        np.testing.assert_allclose(result.scores[q], [score for score, _ in expected])
    narrow = constrained_beam_search(step, trie, n_queries=1, beam_size=2)
    assert set(narrow.items[0].tolist()) <= set(range(len(CODES)))


def test_beam_search_pads_when_fewer_items_exist_and_skips_excluded_subtrees() -> None:
    trie = CodeTrie(CODES)
    _, step = scripted_step(prefer_invalid=False)
    wide = constrained_beam_search(step, trie, n_queries=1, beam_size=8)
    assert (wide.items[0, :5] >= 0).all() and (wide.items[0, 5:] == -1).all()
    assert np.isneginf(wide.scores[0, 5:]).all()
    # excluding items 0, 1, 2 removes the whole subtree under code 0: two beams still end in items 3 and 4
    result = constrained_beam_search(step, trie, n_queries=2, beam_size=2,
                                     excluded=[np.array([0, 1, 2]), np.array([], dtype=np.int64)])
    assert sorted(result.items[0].tolist()) == [3, 4]
    assert result.items[1].tolist() == [item for _, item in brute_force(step, CODES)][:2]
    assert result.invalid == 0
    everything = constrained_beam_search(step, trie, n_queries=1, beam_size=3, excluded=[np.arange(5)])
    assert everything.items.shape == (1, 0)
    with pytest.raises(ConfigError, match="beam_size"):
        constrained_beam_search(step, trie, 1, 0)


# ---- TIGER ------------------------------------------------------------------------------------------------
N_ITEMS = fakes.CYCLE
SMALL = {"hidden": 32, "n_layers": 1, "n_heads": 2, "ff_dim": 64, "dropout": 0.0, "lr": 5e-3, "batch_size": 64,
         "epochs": 10, "beam_size": 5, "max_items": 5, "num_threads": 1}


def cyclic_dataset(n_users: int = 60, length: int = 10, seed: int = 0) -> Dataset:
    return fakes.cyclic_dataset(n_users, length, seed)


def semantic_ids() -> SemanticIds:
    """Codes from random embeddings, in reverse item order, so alignment to the vocabulary is exercised."""
    embeddings = np.random.default_rng(0).normal(size=(N_ITEMS, 8))
    return build_semantic_ids(None, [f"i{k}" for k in reversed(range(N_ITEMS))], embeddings=embeddings,
                              levels=2, codebook_size=4)


@pytest.fixture(scope="module")
def data() -> Dataset:
    return cyclic_dataset()


@pytest.fixture(scope="module")
def fitted(data: Dataset) -> TIGER:
    return TIGER(**SMALL).with_semantic_ids(semantic_ids()).fit(data)


def next_histories() -> list[np.ndarray]:
    return [np.array([(k - 2) % N_ITEMS, (k - 1) % N_ITEMS, k]) for k in range(N_ITEMS)]


def test_learns_the_sequence_loss_decreases_and_weights_change(fitted: TIGER) -> None:
    losses = [h["loss"] for h in fitted.history_]
    assert len(losses) == SMALL["epochs"] and losses[-1] < 0.5 * losses[0]
    scores = fitted.score(np.full(N_ITEMS, -1), next_histories())
    assert np.mean(scores.argmax(1) == (np.arange(N_ITEMS) + 1) % N_ITEMS) >= 0.9
    # the trained weights differ from the ones the same seed initialises
    with torch.random.fork_rng():
        torch.manual_seed(fitted.seed)
        initial = fitted._build(fitted.semantic_ids_.level_sizes).state_dict()
    trained = fitted.net.state_dict()
    assert all(not torch.equal(initial[name], trained[name]) for name in ("token_emb.weight", "heads.0.weight"))
    # ids were re-aligned to the dataset's vocabulary order
    assert fitted.semantic_ids_.item_ids == tuple(f"i{k}" for k in range(N_ITEMS))


def test_scores_only_generated_items_and_never_an_invalid_one(fitted: TIGER, data: Dataset) -> None:
    scores = fitted.score(np.arange(data.n_users), [data.sequence(u) for u in range(data.n_users)])
    assert scores.shape == (data.n_users, N_ITEMS) and scores.dtype == np.float32
    generated = scores > NOT_GENERATED
    assert (generated.sum(1) <= SMALL["beam_size"]).all() and generated.any(1).all()
    assert (scores[generated] <= 0).all()  # log-probabilities
    for u in range(data.n_users):  # beam_exclude_history: no beam is spent on items already seen
        assert not generated[u, data.sequence(u)].any()
    assert fitted.invalid_generations_ == 0
    top = fitted.recommend("u0", k=3)
    assert len(top) == 3 and not set(top.items) & set(data.item_vocab.lookup_ids(data.sequence(0)))


def test_save_load_round_trip_gives_identical_scores(fitted: TIGER, tmp_path: Path) -> None:
    fitted.save(tmp_path / "tiger")
    assert not list((tmp_path / "tiger").glob("*.pkl"))
    loaded = Recommender.load(tmp_path / "tiger")
    assert isinstance(loaded, TIGER) and MODEL_REGISTRY["tiger"] is TIGER
    histories = next_histories()
    np.testing.assert_array_equal(loaded.score(np.full(N_ITEMS, -1), histories),
                                  fitted.score(np.full(N_ITEMS, -1), histories))
    np.testing.assert_array_equal(loaded.semantic_ids_.codes, fitted.semantic_ids_.codes)
    assert loaded.hyperparameters() == fitted.hyperparameters()


def test_early_stopping_on_validation_and_ids_from_a_folder_or_catalog(data: Dataset, tmp_path: Path) -> None:
    semantic_ids().save(tmp_path / "ids")
    # hold out each user's last item as validation, train on the rest
    last = {u: rows[-1] for u, rows in enumerate(np.split(data.time_order, data.sequence_indptr[1:-1]))}
    is_valid = np.zeros(len(data), dtype=bool)
    is_valid[list(last.values())] = True
    train, valid = data.take(np.flatnonzero(~is_valid)), data.take(np.flatnonzero(is_valid))
    model = TIGER(**{**SMALL, "epochs": 6, "patience": 2, "eval_every": 2},
                  semantic_ids_dir=str(tmp_path / "ids")).fit(train, valid)
    evaluated = [h for h in model.history_ if h["valid_ndcg"] is not None]
    assert [h["epoch"] for h in evaluated] == [2, 4, 6][:len(evaluated)]
    assert model.best_epoch_ == max(evaluated, key=lambda h: h["valid_ndcg"])["epoch"]
    assert max(h["valid_ndcg"] for h in evaluated) > 0.3
    assert model.invalid_generations_ == 0
    # a catalog with precomputed embeddings builds the ids inside fit
    catalog = ItemCatalog(Item(f"i{k}", f"Title {k}") for k in range(N_ITEMS))
    embeddings = np.random.default_rng(1).normal(size=(N_ITEMS, 8))
    built = TIGER(**{**SMALL, "epochs": 1}, levels=2, codebook_size=4).with_catalog(catalog, embeddings).fit(data)
    assert built.semantic_ids_.levels == 2 and built.semantic_ids_.codebook_size == 4


def test_bad_configuration_is_a_clear_config_error(data: Dataset) -> None:
    with pytest.raises(ConfigError, match="hidden"):
        TIGER(hidden=30, n_heads=4)
    with pytest.raises(ConfigError, match="beam_size"):
        TIGER(beam_size=0)
    with pytest.raises(ConfigError, match="beam_sise"):
        TIGER.from_config({"beam_sise": 3})
    with pytest.raises(ConfigError, match="ids_method"):
        TIGER.from_config({"ids_method": "vq"})
    embeddings = np.zeros((N_ITEMS, 4)) + np.arange(N_ITEMS)[:, None]
    with pytest.raises(ConfigError, match="codebook_size 256 exceeds the number of items"):
        TIGER(**SMALL).with_catalog(ItemCatalog([]), embeddings).fit(data)
    with pytest.raises(ConfigError, match="cannot find item texts for dataset 'cyclic'"):
        TIGER(**SMALL).fit(data)
    with pytest.raises(ConfigError, match="no code"):
        TIGER(**SMALL).with_semantic_ids(semantic_ids().aligned([f"i{k}" for k in range(5)])).fit(data)
    assert TIGER(**SMALL).item_vocab is None  # nothing looks fitted after a failed fit
