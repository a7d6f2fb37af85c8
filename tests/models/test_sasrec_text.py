"""SASRec with item text: the semantic view carries what ids cannot (items never seen in training), the model
saves and loads with its text, and the composition layer hands the text over."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recllm.data.dataset import Dataset
from recllm.data.vocabulary import Vocabulary
from recllm.errors import ConfigError
from recllm.models.base import Recommender
from recllm.models.sasrec import SASRec
from recllm.models.text import ItemEmbeddings, ReadsItemText

GROUPS, PER_GROUP, WARM = 4, 12, 8
ITEMS = [f"g{g}i{i}" for g in range(GROUPS) for i in range(PER_GROUP)]
SMALL = {"max_len": 10, "hidden": 32, "n_blocks": 1, "dropout": 0.1, "lr": 5e-3, "batch_size": 32, "epochs": 12,
         "num_threads": 1}


def grouped_dataset(n_users: int = 200, length: int = 8, seed: int = 0) -> Dataset:
    """Every user walks the groups in turn (an item of group g is followed by one of group g + 1), choosing warm
    items at random; the last PER_GROUP - WARM items of every group never appear in training (they are in the
    vocabulary, as a new catalogue entry would be). Which group comes next is learnt, not similar: text
    similarity alone points at the wrong group."""
    rng = np.random.default_rng(seed)
    users, items, stamps = [], [], []
    for u in range(n_users):
        start = int(rng.integers(GROUPS))
        for step in range(length):
            users.append(f"u{u}")
            items.append(f"g{(start + step) % GROUPS}i{int(rng.integers(WARM))}")
            stamps.append(step)
    return Dataset.from_ids(users, items, timestamps=np.array(stamps), name="groups",
                            item_vocab=Vocabulary(ITEMS, kind="item"))


def text_vectors(seed: int = 1) -> ItemEmbeddings:
    """Item text: the group's direction plus noise; the items' order differs from the vocabulary's."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(GROUPS, 16)) * 3
    order = rng.permutation(len(ITEMS))
    ids = tuple(ITEMS[k] for k in order)
    vectors = np.stack([centres[int(item[1])] + rng.normal(size=16) for item in ids]).astype(np.float32)
    return ItemEmbeddings(ids, vectors)


def cold_pair_accuracy(model: SASRec) -> float:
    """For a history ending in group g: the share of (cold item of group g + 1, cold item of another group)
    pairs that the model orders correctly (0.5 is chance)."""
    vocab = model.item_vocab
    assert vocab is not None
    cold = {g: vocab.indices([f"g{g}i{i}" for i in range(WARM, PER_GROUP)]) for g in range(GROUPS)}
    right, total = 0, 0
    for g in range(GROUPS):
        history = vocab.indices([f"g{(g - 2) % GROUPS}i0", f"g{(g - 1) % GROUPS}i1", f"g{g}i2"])
        following = (g + 1) % GROUPS
        scores = model.score(np.array([-1]), [history])[0]
        own = scores[cold[following]]
        other = scores[np.concatenate([cold[h] for h in range(GROUPS) if h != following])]
        right += int((own[:, None] > other[None, :]).sum())
        total += own.size * other.size
    return right / total


@pytest.fixture(scope="module")
def data() -> Dataset:
    return grouped_dataset()


@pytest.mark.parametrize("fusion", ["concat", "add"])
def test_the_semantic_view_ranks_items_never_seen_in_training_by_their_text(data: Dataset, fusion: str) -> None:
    fused = SASRec(**SMALL, text=fusion).with_item_embeddings(text_vectors()).fit(data)
    untrained = SASRec(**{**SMALL, "epochs": 1, "lr": 1e-6}, text=fusion).with_item_embeddings(text_vectors()).fit(data)
    plain = SASRec(**SMALL).fit(data)
    assert cold_pair_accuracy(fused) >= 0.9
    assert cold_pair_accuracy(untrained) <= 0.7  # similar text points at the group just seen, not the next
    assert cold_pair_accuracy(plain) <= 0.75  # ids alone know nothing of unseen items


def test_init_fusion_starts_the_ids_from_the_text_components(data: Dataset) -> None:
    model = SASRec(**{**SMALL, "epochs": 1, "lr": 1e-6}, text="init").with_item_embeddings(text_vectors()).fit(data)
    assert model.net is not None
    weights = model.net.item_emb.weight.detach().numpy()
    assert np.allclose(weights[0], 0)
    vocab = model.item_vocab
    assert vocab is not None
    same = np.corrcoef(weights[1 + vocab.index("g0i0")], weights[1 + vocab.index("g0i11")])[0, 1]
    other = np.corrcoef(weights[1 + vocab.index("g0i0")], weights[1 + vocab.index("g1i11")])[0, 1]
    assert same > other  # the first components separate the groups


def test_saved_text_model_loads_without_its_embeddings_and_scores_identically(data: Dataset, tmp_path: Path) -> None:
    model = SASRec(**{**SMALL, "epochs": 2}, text="concat").with_item_embeddings(text_vectors()).fit(data)
    model.save(tmp_path / "m")
    loaded = Recommender.load(tmp_path / "m")
    assert isinstance(loaded, SASRec) and loaded.text == "concat" and not loaded.needs_item_embeddings()
    histories = [data.sequence(u) for u in range(5)]
    np.testing.assert_array_equal(model.score(np.arange(5), histories), loaded.score(np.arange(5), histories))


def test_text_fusion_reads_item_text_and_says_so_when_it_has_none(data: Dataset) -> None:
    assert isinstance(SASRec(text="concat"), ReadsItemText) and SASRec(text="concat").needs_item_embeddings()
    assert not SASRec().needs_item_embeddings()
    with pytest.raises(ConfigError, match="text='concat' needs item-text embeddings for dataset 'groups'"):
        SASRec(**SMALL, text="concat").fit(data)
    with pytest.raises(ConfigError, match="no item embedding for 1 item"):
        partial = ItemEmbeddings(tuple(ITEMS[1:]), np.zeros((len(ITEMS) - 1, 4), dtype=np.float32))
        SASRec(**SMALL, text="add").with_item_embeddings(partial).fit(data)
    with pytest.raises(ConfigError, match="text"):
        SASRec(text="sum")
