"""Every built-in recommender against ``recllm.testing.RecommenderContract``, with tiny hyper-parameters."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from recllm.data import ItemList
from recllm.models import MostPopular, Recommender, create_model, model_names
from recllm.models.sasrec import SASRec
from recllm.models.semantic_ids import quantise_items
from recllm.models.text import ItemEmbeddings
from recllm.models.text_similarity import TextSimilarity
from recllm.models.tiger import TIGER
from recllm.testing import RING, FittedCase, RecommenderContract, ring_dataset

SASREC: dict[str, Any] = {"max_len": 10, "hidden": 16, "n_blocks": 1, "dropout": 0.0, "lr": 5e-3, "batch_size": 64,
                          "epochs": 2, "num_threads": 1}
TIGER_SMALL: dict[str, Any] = {"hidden": 16, "n_layers": 1, "n_heads": 2, "ff_dim": 32, "dropout": 0.0, "lr": 5e-3,
                               "batch_size": 64, "epochs": 2, "beam_size": 8, "max_items": 5, "num_threads": 1}


def test_the_testing_kit_imports_without_hypothesis() -> None:
    code = ("import sys; sys.modules['hypothesis'] = None; import recllm.testing as t; "
            "assert 'RecommenderContract' in t.__all__ and 'torch' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_every_registered_model_has_a_contract_class_here() -> None:
    covered = {cls.name for cls in globals().values()
               if isinstance(cls, type) and issubclass(cls, RegisteredModel) and cls is not RegisteredModel}
    assert set(model_names()) <= covered


class RegisteredModel(RecommenderContract):
    """A built-in model created by name through the registry, as configuration files create it."""

    name: ClassVar[str]
    params: ClassVar[dict[str, Any]] = {}

    def make_model(self) -> Recommender:
        return create_model(self.name, self.params)


class TestPopularity(RegisteredModel):
    name = "pop"


class TestItemKNN(RegisteredModel):
    name = "itemknn"
    params: ClassVar[dict[str, Any]] = {"neighbors": 10}


class TestEASE(RegisteredModel):
    name = "ease"


class TestALS(RegisteredModel):
    name = "als"
    params: ClassVar[dict[str, Any]] = {"factors": 8, "iterations": 3, "num_threads": 1}
    history_defines_user = False  # known users have trained vectors; an ad-hoc history is folded in


class TestBPR(RegisteredModel):
    name = "bpr"
    params: ClassVar[dict[str, Any]] = {"factors": 8, "iterations": 3, "num_threads": 1}
    history_defines_user = False


class TestSASRec(RegisteredModel):
    name = "sasrec"
    params = SASREC


class TestSASRecWithPTUMPretraining(RegisteredModel):
    name = "sasrec"
    params: ClassVar[dict[str, Any]] = {**SASREC, "pretrain": "both", "pretrain_epochs": 1}


class TestTIGER(RegisteredModel):
    name = "tiger"
    params = TIGER_SMALL

    def make_model(self) -> Recommender:
        model = create_model(self.name, self.params)
        assert isinstance(model, TIGER)
        items = [f"i{k}" for k in range(RING)]
        embeddings = np.random.default_rng(0).normal(size=(RING, 8))
        return model.with_semantic_ids(quantise_items(items, embeddings, levels=2, codebook_size=4))


def ring_text() -> ItemEmbeddings:
    """Item-text vectors of the ring items: neighbours on the ring get similar vectors."""
    angles = 2 * np.pi * np.arange(RING) / RING
    vectors = np.stack([np.cos(angles), np.sin(angles), np.cos(2 * angles), np.sin(2 * angles)], axis=1)
    return ItemEmbeddings(tuple(f"i{k}" for k in range(RING)), vectors.astype(np.float32))


class TestTextSimilarity(RegisteredModel):
    name = "text"

    def make_model(self) -> Recommender:
        model = create_model(self.name)
        assert isinstance(model, TextSimilarity)
        return model.with_item_embeddings(ring_text())


class TestSASRecWithText(RegisteredModel):
    """SASRec with a semantic view of item text beside its id embeddings."""

    name = "sasrec"
    params: ClassVar[dict[str, Any]] = {**SASREC, "text": "concat", "adapter_hidden": 8}

    def make_model(self) -> Recommender:
        model = create_model(self.name, self.params)
        assert isinstance(model, SASRec)
        return model.with_item_embeddings(ring_text())


# ---- the contract catches broken models ---------------------------------------------------------------------
class Float64Scores(MostPopular):
    """Scores in float64, against the documented float32."""

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        return super().score(users, histories).astype(np.float64)


class RecommendsHistory(MostPopular):
    """Ignores the default exclusion of what the user already has."""

    def recommend(self, user: str | int | None = None, **options: Any) -> ItemList:
        return super().recommend(user, **{**options, "exclude": None})


class PicklesState(MostPopular):
    """Saves a pickle beside the safetensors arrays."""

    def save(self, directory: str | Path) -> Path:
        out = super().save(directory)
        (out / "state.pkl").write_bytes(pickle.dumps({"popularity": self.popularity_}))
        return out


class Unchecked(RecommenderContract):
    """The contract, called by hand on a given model (never collected: no Test prefix)."""


@pytest.mark.parametrize(("broken", "check"), [
    (Float64Scores, Unchecked.test_scores_are_one_finite_float32_row_per_user),
    (RecommendsHistory, Unchecked.test_recommend_gives_k_distinct_unseen_known_items_best_first),
    (PicklesState, Unchecked.test_save_and_load_round_trip_gives_identical_scores_without_pickle),
])
def test_the_contract_fails_a_broken_model_and_passes_the_model_it_breaks(
        broken: type[Recommender], check: Callable[..., None], tmp_path: Path) -> None:
    dataset = ring_dataset()
    extra = (tmp_path / "model",) if "save" in check.__name__ else ()
    model = broken()
    with pytest.raises(AssertionError):
        check(Unchecked(), FittedCase(model, model.fit(dataset), dataset), *extra)
    healthy = MostPopular()
    check(Unchecked(), FittedCase(healthy, healthy.fit(dataset), dataset), *(p.with_name("healthy") for p in extra))
