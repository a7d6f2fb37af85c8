"""Semantic ids: k-means, residual quantisers, the collision level, statistics and persistence."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from recllm.data import DataBundle, Item, ItemCatalog
from recllm.errors import ConfigError
from recllm.llm.base import Embedder
from recllm.train.semantic_ids import (
    RQVAE,
    RQKMeans,
    SemanticIds,
    build_semantic_ids,
    collision_level,
    item_texts,
    kmeans,
)


def clustered(n_clusters: int = 8, per_cluster: int = 25, dim: int = 16, noise: float = 0.05,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points around ``n_clusters`` well separated centres, and each point's true cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim)) * 3
    truth = np.repeat(np.arange(n_clusters), per_cluster)
    return centres[truth] + noise * rng.normal(size=(len(truth), dim)), truth


def ids(n: int) -> list[str]:
    return [f"i{k}" for k in range(n)]


def test_kmeans_recovers_separated_clusters_deterministically() -> None:
    x, truth = clustered()
    centroids, labels = kmeans(x, 8, seed=3)
    again_centroids, again_labels = kmeans(x, 8, seed=3)
    np.testing.assert_array_equal(labels, again_labels)
    np.testing.assert_array_equal(centroids, again_centroids)
    # one label per true cluster and one true cluster per label
    pairs = set(zip(truth.tolist(), labels.tolist(), strict=True))
    assert len(pairs) == 8 and len({t for t, _ in pairs}) == 8 and len({lab for _, lab in pairs}) == 8


def test_kmeans_with_fewer_distinct_points_than_clusters_stays_finite() -> None:
    x = np.repeat(np.eye(3), 4, axis=0)  # 12 points, 3 distinct
    centroids, labels = kmeans(x, 5, seed=0)
    assert np.isfinite(centroids).all()
    assert len(np.unique(labels)) == 3  # each distinct point in its own cluster
    assert all(len(np.unique(labels[r * 4:(r + 1) * 4])) == 1 for r in range(3))
    with pytest.raises(ConfigError, match="k=13"):
        kmeans(x, 13)


def test_rqkmeans_same_seed_same_codes_and_coarse_level_follows_clusters() -> None:
    x, truth = clustered()
    first = build_semantic_ids(None, ids(len(x)), embeddings=x, levels=3, codebook_size=8, seed=1)
    second = build_semantic_ids(None, ids(len(x)), embeddings=x, levels=3, codebook_size=8, seed=1)
    np.testing.assert_array_equal(first.codes, second.codes)
    # the first level separates the true clusters exactly
    assert len(set(zip(truth.tolist(), first.codes[:, 0].tolist(), strict=True))) == 8
    assert first.codes.shape == (200, 4) and first.levels == 3


def test_collision_level_counts_in_arrival_order_and_makes_tuples_unique() -> None:
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 0], [3, 3]])
    np.testing.assert_array_equal(collision_level(codes), [0, 0, 1, 2, 1, 0])
    sids = SemanticIds.from_codes(ids(6), codes, codebook_size=4)
    assert len(np.unique(sids.codes, axis=0)) == 6
    assert sids.level_sizes == (4, 4, 3)
    x = np.repeat(np.eye(4), 5, axis=0)  # 20 items, only 4 distinct embeddings: 5-way collisions
    built = build_semantic_ids(None, ids(20), embeddings=x, levels=2, codebook_size=4)
    assert len(np.unique(built.codes, axis=0)) == 20
    assert sorted(built.codes[:, -1].tolist()) == sorted(list(range(5)) * 4)


def test_stats_on_a_hand_made_case() -> None:
    codes = np.array([[0, 0, 0], [0, 1, 0], [1, 1, 0], [1, 1, 0]])
    stats = SemanticIds.from_codes(ids(4), codes, codebook_size=4).stats()
    first, second, third = stats["levels"]
    assert (first["used"], first["usage"]) == (2, 0.5)
    assert first["perplexity"] == pytest.approx(2.0)
    expected_entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert second["entropy"] == pytest.approx(expected_entropy)
    assert (third["used"], third["perplexity"]) == (1, pytest.approx(1.0))
    assert stats["collision_rate"] == 0.5  # the last two items share (1, 1, 0)
    assert stats["max_collision_depth"] == 2


def test_token_strings_alignment_and_save_load_round_trip(tmp_path: Path) -> None:
    sids = SemanticIds.from_codes(["x", "y", "z"], np.array([[12, 3, 200], [12, 3, 200], [0, 1, 2]]), 256)
    assert sids.token_strings("x") == "<a_12><b_3><c_200><d_0>"
    assert sids.token_strings("y") == "<a_12><b_3><c_200><d_1>"
    sids.save(tmp_path / "ids")
    assert {p.suffix for p in (tmp_path / "ids").iterdir()} == {".json", ".safetensors"}
    loaded = SemanticIds.load(tmp_path / "ids")
    assert loaded.item_ids == sids.item_ids and loaded.codebook_size == 256
    np.testing.assert_array_equal(loaded.codes, sids.codes)
    reordered = sids.aligned(["y", "z"])  # y now arrives first: its collision code becomes 0
    assert reordered.token_strings("y") == "<a_12><b_3><c_200><d_0>"
    with pytest.raises(ConfigError, match="no code"):
        sids.aligned(["x", "w"])
    with pytest.raises(ConfigError, match="no saved semantic ids"):
        SemanticIds.load(tmp_path / "missing")


def test_bad_configuration_raises_clear_errors() -> None:
    x, _ = clustered(n_clusters=2, per_cluster=5)
    with pytest.raises(ConfigError, match="codebook_size 256 exceeds the number of items"):
        build_semantic_ids(None, ids(10), embeddings=x)
    with pytest.raises(ConfigError, match="unknown method 'vq'"):
        build_semantic_ids(None, ids(10), embeddings=x, method="vq", codebook_size=4)
    with pytest.raises(ConfigError, match="embeddings must be"):
        build_semantic_ids(None, ids(9), embeddings=x, codebook_size=4)
    with pytest.raises(ConfigError, match="catalog"):
        build_semantic_ids(None, ids(10), codebook_size=4)
    with pytest.raises(ConfigError, match="levels"):
        RQKMeans(levels=0)
    with pytest.raises(ConfigError, match="bad option"):
        build_semantic_ids(None, ids(10), embeddings=x, codebook_size=4, epochs=3)  # an RQ-VAE option


def test_rqvae_reconstruction_improves_and_is_deterministic() -> None:
    x, truth = clustered(n_clusters=4, per_cluster=16, dim=12, noise=0.2)
    options = {"levels": 2, "codebook_size": 4, "latent_dim": 8, "hidden": (32,), "epochs": 40,
               "batch_size": 32, "lr": 3e-3, "seed": 0}
    model = RQVAE(**options).fit(x)
    recon = [h["recon"] for h in model.history_]
    assert recon[-1] < 0.5 * recon[0]
    np.testing.assert_array_equal(model.encode(x), RQVAE(**options).fit(x).encode(x))
    first = model.encode(x)[:, 0]
    purity = np.mean([np.bincount(first[truth == c]).max() / (truth == c).sum() for c in range(4)])
    assert purity >= 0.9  # a cluster's items (nearly) all share the coarse code
    sids = build_semantic_ids(None, ids(len(x)), embeddings=x, method="rqvae", levels=2, codebook_size=4,
                              latent_dim=8, hidden=(32,), epochs=5, batch_size=32)
    assert sids.method == "rqvae" and len(np.unique(sids.codes, axis=0)) == len(x)


class CountingEmbedder(Embedder):
    """A deterministic fake: a text's vector comes from its hash, and every text embedded is recorded."""

    def __init__(self) -> None:
        super().__init__("fake")
        self.seen: list[str] = []

    @property
    def dim(self) -> int:
        return 8

    def _embed(self, texts: list[str]) -> np.ndarray:
        self.seen.extend(texts)
        return np.stack([np.random.default_rng(sum(map(ord, t))).normal(size=8) for t in texts])


def test_item_texts_come_from_the_catalog_and_feed_the_embedder(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECLLM_HOME", str(tmp_path))  # a fresh embedding store: the embedder must be asked
    catalog = ItemCatalog([Item("m1", "Usual Suspects, The", 1995, ("Crime", "Thriller")),
                           Item("m2", "Heat", 1995, ("Action",)), Item("m3", "Alien", 1979)])
    texts = item_texts(catalog, ["m1", "m2", "zz"])
    assert texts == ["The Usual Suspects (1995); genres: Crime, Thriller", "Heat (1995); genres: Action", "zz"]
    embedder = CountingEmbedder()
    sids = build_semantic_ids(catalog, ["m1", "m2", "m3"], embedder=embedder, levels=1, codebook_size=2)
    assert embedder.seen == item_texts(catalog, ["m1", "m2", "m3"])
    assert sids.item_ids == ("m1", "m2", "m3")


def test_movielens_ids_from_minilm_group_similar_movies(ml100k: DataBundle) -> None:
    """The real pipeline on 500 ML-100K movies: MiniLM texts, 3 x 64 codes; few collisions, coarse codes share
    genres far more often than random pairs do."""
    item_ids = list(ml100k.dataset.item_vocab.ids)[:500]
    sids = build_semantic_ids(ml100k.catalog, item_ids, levels=3, codebook_size=64, seed=0)
    stats = sids.stats()
    assert stats["collision_rate"] < 0.1 and stats["levels"][0]["usage"] == 1.0
    genres = [set(ml100k.catalog[i].genres) for i in item_ids]
    order = np.argsort(sids.codes[:, 0], kind="stable")
    neighbours = [(a, b) for a, b in itertools.pairwise(order)
                  if sids.codes[a, 0] == sids.codes[b, 0]]  # consecutive items within one coarse code
    random_pairs = np.random.default_rng(0).integers(len(item_ids), size=(len(neighbours), 2))

    def share_a_genre(pairs: list[tuple[int, int]] | np.ndarray) -> float:
        return float(np.mean([bool(genres[a] & genres[b]) for a, b in pairs]))

    assert share_a_genre(neighbours) > share_a_genre(random_pairs) + 0.2
