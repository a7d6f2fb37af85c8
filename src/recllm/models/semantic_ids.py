"""Semantic IDs (TIGER, Rajput et al. 2023): each item becomes a short tuple of codes from residual quantisation.

An item's text embedding is quantised level by level: level 1 picks the nearest of ``codebook_size`` centroids,
level 2 quantises what is left over (the residual), and so on. Similar items share code prefixes, so a
generative model that emits codes one at a time can move from coarse to fine. Two quantisers are offered:
``RQKMeans`` (k-means per level on the residuals; a strong, cheap baseline) and ``RQVAE`` (the paper's
encoder, residual codebooks and decoder trained jointly). Items whose semantic tuples coincide get a last
collision-breaking code 0, 1, 2, ... in item order, so every full tuple names exactly one item.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from torch import nn

from recllm.config import load_json_record
from recllm.errors import ConfigError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CODES_FILE = "semantic_ids.safetensors"
META_FILE = "semantic_ids.json"
METHODS = ("rqkmeans", "rqvae")


# ---- k-means ------------------------------------------------------------------------------------------
def _sq_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (n, k), clipped at 0 against rounding."""
    d2 = (x * x).sum(1)[:, None] - 2.0 * (x @ centroids.T) + (centroids * centroids).sum(1)[None, :]
    return np.maximum(d2, 0.0)


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centroid drawn with probability proportional to squared distance."""
    n = len(x)
    chosen = [int(rng.integers(n))]
    closest = _sq_distances(x, x[chosen]).ravel()
    for _ in range(1, k):
        total = closest.sum()
        # all points already coincide with a centroid (fewer distinct points than k): draw uniformly
        index = int(rng.integers(n)) if total <= 0 else int(rng.choice(n, p=closest / total))
        chosen.append(index)
        closest = np.minimum(closest, _sq_distances(x, x[index:index + 1]).ravel())
    return x[chosen].copy()


def kmeans(x: np.ndarray, k: int, *, seed: int | np.random.Generator = 0, iters: int = 50,
           tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding; returns (centroids (k, d), labels (n,)).

    Deterministic for a seed. A cluster that empties is re-seeded with the point farthest from its own
    centroid (then the next farthest, ...), so every code stays in use while data allows.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ConfigError(f"kmeans needs a non-empty (n, d) array, got shape {x.shape}")
    if not 1 <= k <= len(x):
        raise ConfigError(f"kmeans: k={k} clusters need 1 <= k <= n points (n={len(x)})")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    centroids = _kmeans_pp(x, k, rng)
    scale = float((x * x).sum()) or 1.0
    for _ in range(iters):
        d2 = _sq_distances(x, centroids)
        labels = d2.argmin(1)
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, x)
        new = centroids.copy()
        filled = counts > 0
        new[filled] = sums[filled] / counts[filled, None]
        empty = np.flatnonzero(~filled)
        if len(empty):
            own = d2[np.arange(len(x)), labels]
            far = np.argsort(-own, kind="stable")[:len(empty)]
            new[empty[:len(far)]] = x[far]
        shift = float(((new - centroids) ** 2).sum())
        centroids = new
        if shift <= tol * scale:
            break
    labels = _sq_distances(x, centroids).argmin(1)
    return centroids, labels


# ---- quantisers ---------------------------------------------------------------------------------------
def _check_levels(levels: int, codebook_size: int, n_items: int | None = None) -> None:
    if levels < 1:
        raise ConfigError(f"semantic ids: levels must be at least 1, got {levels}")
    if codebook_size < 2:
        raise ConfigError(f"semantic ids: codebook_size must be at least 2, got {codebook_size}")
    if n_items is not None and codebook_size > n_items:
        raise ConfigError(f"semantic ids: codebook_size {codebook_size} exceeds the number of items ({n_items}); "
                          f"use codebook_size <= {n_items} (about {max(2, round(n_items ** (1 / levels)))} "
                          f"codes per level suits {levels} levels)")


class RQKMeans:
    """Residual k-means: level l clusters the residuals left by levels 1..l-1 into ``codebook_size`` centroids.

    Embeddings are first centred and projected on their top ``pca_dim`` principal components (0: keep all).
    In the 384 dimensions of MiniLM, residuals are nearly orthogonal, so one centroid near the origin
    swallows most of them: on MovieLens-100K (3 x 256) 43% of items collided without the projection and
    2% with 32 components.
    """

    def __init__(self, levels: int = 3, codebook_size: int = 256, iters: int = 50, pca_dim: int = 32,
                 seed: int = 0) -> None:
        _check_levels(levels, codebook_size)
        if pca_dim < 0:
            raise ConfigError(f"rq-kmeans: pca_dim must be 0 (off) or positive, got {pca_dim}")
        self.levels = levels
        self.codebook_size = codebook_size
        self.iters = iters
        self.pca_dim = pca_dim
        self.seed = seed
        self.codebooks_: list[np.ndarray] = []
        self.mean_: np.ndarray | None = None
        self.components_: np.ndarray | None = None

    def _project(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.mean_ is None or self.components_ is None:
            return x
        return (x - self.mean_) @ self.components_.T

    def fit(self, x: np.ndarray) -> Self:
        """Learn the projection and one codebook per level on ``x`` (n, d)."""
        x = np.asarray(x, dtype=np.float64)
        _check_levels(self.levels, self.codebook_size, len(x))
        self.mean_ = self.components_ = None
        if 0 < self.pca_dim < x.shape[1]:
            self.mean_ = x.mean(0)
            _, _, vt = np.linalg.svd(x - self.mean_, full_matrices=False)
            # fix each component's sign (largest entry positive) so the projection does not depend on LAPACK
            signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])
            self.components_ = (vt * signs[:, None])[:self.pca_dim]
        rng = np.random.default_rng(self.seed)
        residual = self._project(x)
        self.codebooks_ = []
        for level in range(self.levels):
            centroids, labels = kmeans(residual, self.codebook_size, seed=rng, iters=self.iters)
            self.codebooks_.append(centroids)
            residual = residual - centroids[labels]
            log.debug("rq-kmeans level %d: residual energy %.4g", level + 1, float((residual ** 2).sum()))
        return self

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Codes (n, levels) int64 by greedy nearest-centroid choice on the residuals."""
        if not self.codebooks_:
            raise ConfigError("RQKMeans.encode called before fit")
        residual = self._project(x).copy()
        codes = np.empty((len(residual), self.levels), dtype=np.int64)
        for level, centroids in enumerate(self.codebooks_):
            codes[:, level] = _sq_distances(residual, centroids).argmin(1)
            residual -= centroids[codes[:, level]]
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Sum of the chosen centroids: the reconstruction of each (projected) embedding."""
        return sum(book[codes[:, level]] for level, book in enumerate(self.codebooks_))


def _sq_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared error summed over dimensions, averaged over rows.

    Summing (not averaging) over the 384 embedding dimensions keeps the reconstruction term in charge; with
    a per-element mean, collapsing every latent onto one code minimised the quantisation terms instead.
    """
    return ((a - b) ** 2).sum(-1).mean()


class _RQVAENet(nn.Module):
    """Encoder MLP -> latent -> residual codebooks -> decoder MLP."""

    def __init__(self, dim: int, hidden: Sequence[int], latent: int, levels: int, codebook_size: int) -> None:
        super().__init__()
        sizes = [dim, *hidden, latent]
        self.encoder = self._mlp(sizes)
        self.decoder = self._mlp(sizes[::-1])
        self.codebooks = nn.Parameter(torch.randn(levels, codebook_size, latent) * 0.1)

    @staticmethod
    def _mlp(sizes: Sequence[int]) -> nn.Sequential:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.SiLU())
        return nn.Sequential(*layers)

    def quantise(self, z: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(codes (n, L), straight-through quantised latent (n, latent), codebook + commitment loss)."""
        residual = z
        total = torch.zeros_like(z)
        codes = []
        loss = z.new_zeros(())
        for book in self.codebooks:
            index = torch.cdist(residual.detach(), book.detach()).argmin(1)
            chosen = book[index]
            # codebook term pulls codes to the residuals; commitment term keeps the encoder near its codes
            loss = loss + _sq_error(chosen, residual.detach()) + beta * _sq_error(residual, chosen.detach())
            total = total + chosen
            residual = residual - chosen.detach()
            codes.append(index)
        quantised = z + (total - z).detach()  # straight-through: decoder gradient flows to the encoder
        return torch.stack(codes, 1), quantised, loss


class RQVAE:
    """Residual-quantised VAE: encoder, ``levels`` codebooks (straight-through estimator), decoder.

    Codebooks start from k-means on the first batch's residuals, so no code starts dead. Training is
    deterministic on CPU for a seed (private torch RNG state; numpy generator for batch order).
    """

    def __init__(self, levels: int = 3, codebook_size: int = 256, latent_dim: int = 32,
                 hidden: Sequence[int] = (256, 128), beta: float = 0.25, lr: float = 1e-3,
                 weight_decay: float = 1e-4, epochs: int = 300, batch_size: int = 512, seed: int = 0,
                 device: str = "cpu") -> None:
        _check_levels(levels, codebook_size)
        for label, value in (("latent_dim", latent_dim), ("epochs", epochs), ("batch_size", batch_size)):
            if value < 1:
                raise ConfigError(f"rqvae: {label} must be at least 1, got {value}")
        self.levels = levels
        self.codebook_size = codebook_size
        self.latent_dim = latent_dim
        self.hidden = tuple(hidden)
        self.beta = beta
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.net: _RQVAENet | None = None
        self.history_: list[dict[str, float]] = []

    def fit(self, x: np.ndarray) -> Self:
        """Train on embeddings ``x`` (n, d); ``history_`` holds per-epoch reconstruction and quantisation loss."""
        data = np.asarray(x, dtype=np.float32)
        _check_levels(self.levels, self.codebook_size, len(data))
        device = torch.device(self.device)
        rng = np.random.default_rng(self.seed)
        cuda = [torch.cuda.current_device()] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seed)
            net = _RQVAENet(data.shape[1], self.hidden, self.latent_dim, self.levels, self.codebook_size).to(device)
            tensor = torch.from_numpy(data).to(device)
            order = rng.permutation(len(data))
            self._init_codebooks(net, tensor[torch.from_numpy(order[:max(self.batch_size, self.codebook_size)])], rng)
            optimizer = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            self.history_ = []
            for epoch in range(1, self.epochs + 1):
                net.train()
                order = rng.permutation(len(data))
                recon_sum = rq_sum = 0.0
                for begin in range(0, len(order), self.batch_size):
                    batch = tensor[torch.from_numpy(order[begin:begin + self.batch_size])]
                    _, quantised, rq_loss = net.quantise(net.encoder(batch), self.beta)
                    recon = _sq_error(net.decoder(quantised), batch)
                    loss = recon + rq_loss
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    recon_sum += float(recon.detach()) * len(batch)
                    rq_sum += float(rq_loss.detach()) * len(batch)
                self.history_.append({"epoch": epoch, "recon": recon_sum / len(data), "rq": rq_sum / len(data)})
            net.eval()
        self.net = net
        log.info("rq-vae: %d epochs, reconstruction loss %.5f -> %.5f", self.epochs,
                 self.history_[0]["recon"], self.history_[-1]["recon"])
        return self

    def _init_codebooks(self, net: _RQVAENet, batch: torch.Tensor, rng: np.random.Generator) -> None:
        """Set each level's codebook to k-means centroids of that level's residuals on ``batch``."""
        with torch.no_grad():
            residual = net.encoder(batch).double().cpu().numpy()
            for level in range(self.levels):
                centroids, labels = kmeans(residual, self.codebook_size, seed=rng, iters=25)
                net.codebooks[level].copy_(torch.from_numpy(centroids).to(net.codebooks.dtype))
                residual = residual - centroids[labels]

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Codes (n, levels) int64 of embeddings ``x``."""
        if self.net is None:
            raise ConfigError("RQVAE.encode called before fit")
        with torch.no_grad():
            tensor = torch.from_numpy(np.asarray(x, dtype=np.float32)).to(self.net.codebooks.device)
            codes, _, _ = self.net.quantise(self.net.encoder(tensor), self.beta)
        return codes.cpu().numpy().astype(np.int64)

    def reconstruction_error(self, x: np.ndarray) -> float:
        """Squared reconstruction error (summed over dimensions, mean over rows) of decoding ``x``'s codes."""
        if self.net is None:
            raise ConfigError("RQVAE used before fit")
        with torch.no_grad():
            tensor = torch.from_numpy(np.asarray(x, dtype=np.float32)).to(self.net.codebooks.device)
            _, quantised, _ = self.net.quantise(self.net.encoder(tensor), self.beta)
            return float(_sq_error(self.net.decoder(quantised), tensor))


# ---- result -------------------------------------------------------------------------------------------
def collision_level(codes: np.ndarray) -> np.ndarray:
    """Per item, how many earlier items (in row order) share its whole code tuple: 0, 1, 2, ..."""
    codes = np.asarray(codes)
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")  # rows grouped by tuple, item order kept within a group
    sorted_groups = inverse[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    out = np.empty(len(codes), dtype=np.int64)
    out[order] = np.arange(len(order)) - group_start
    return out


@dataclass(frozen=True)
class SemanticIds:
    """Code tuples of items: ``codes[i]`` = (level 1, ..., level L, collision code) of ``item_ids[i]``.

    ``codebook_size`` bounds the semantic levels; the last column counts items sharing a semantic tuple.
    """

    item_ids: tuple[str, ...]
    codes: np.ndarray
    codebook_size: int
    method: str = "rqkmeans"
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        codes = np.array(self.codes, dtype=np.int64)
        ids = tuple(str(i) for i in self.item_ids)
        if codes.ndim != 2 or codes.shape[0] != len(ids) or codes.shape[1] < 2:
            raise ConfigError(f"semantic ids: codes must be (n_items={len(ids)}, levels + 1), got {codes.shape}")
        if len(ids) and (codes.min() < 0 or codes[:, :-1].max() >= self.codebook_size):
            raise ConfigError(f"semantic ids: codes outside [0, {self.codebook_size})")
        if len(np.unique(codes, axis=0)) != len(codes):
            raise ConfigError("semantic ids: two items have the same code tuple (collision level missing?)")
        index = {item: i for i, item in enumerate(ids)}
        if len(index) != len(ids):
            raise ConfigError("semantic ids: duplicate item ids")
        codes.flags.writeable = False
        object.__setattr__(self, "item_ids", ids)
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_codes(cls, item_ids: Sequence[str], codes: np.ndarray, codebook_size: int,
                   method: str = "rqkmeans") -> SemanticIds:
        """Add the collision-breaking level to semantic ``codes`` (n, L)."""
        codes = np.asarray(codes, dtype=np.int64)
        return cls(tuple(item_ids), np.column_stack([codes, collision_level(codes)]), codebook_size, method)

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def levels(self) -> int:
        """Number of semantic levels (the collision level not counted)."""
        return int(self.codes.shape[1]) - 1

    @property
    def level_sizes(self) -> tuple[int, ...]:
        """Vocabulary size of each column: ``codebook_size`` per semantic level, max collision depth last."""
        last = int(self.codes[:, -1].max()) + 1 if len(self) else 1
        return (self.codebook_size,) * self.levels + (last,)

    def index(self, item_id: str) -> int:
        """Row of ``item_id`` in ``codes``."""
        try:
            return self._index[str(item_id)]
        except KeyError:
            raise ConfigError(f"semantic ids: unknown item '{item_id}'") from None

    def tuple_of(self, item_id: str) -> tuple[int, ...]:
        """The item's full code tuple, collision code last."""
        return tuple(int(c) for c in self.codes[self.index(item_id)])

    def token_strings(self, item_id: str) -> str:
        """The item's codes as prompt tokens, e.g. ``<a_12><b_3><c_200><d_0>``."""
        return "".join(f"<{chr(ord('a') + level)}_{code}>" for level, code in enumerate(self.tuple_of(item_id)))

    def aligned(self, item_ids: Sequence[str]) -> SemanticIds:
        """These ids re-ordered (and subset) to ``item_ids``; collision codes are recomputed for that order."""
        missing = [str(i) for i in item_ids if str(i) not in self._index]
        if missing:
            raise ConfigError(f"semantic ids: {len(missing)} items have no code, e.g. '{missing[0]}'")
        rows = np.array([self._index[str(i)] for i in item_ids], dtype=np.int64)
        return SemanticIds.from_codes([str(i) for i in item_ids], self.codes[rows, :-1], self.codebook_size,
                                      self.method)

    def stats(self) -> dict[str, Any]:
        """Codebook use per semantic level (share of codes used, entropy in nats, perplexity) and collisions.

        ``collision_rate`` is the share of items whose semantic tuple is shared with another item;
        ``max_collision_depth`` the largest number of items sharing one tuple (1: no collisions).
        """
        per_level = []
        for level in range(self.levels):
            counts = np.bincount(self.codes[:, level], minlength=self.codebook_size)
            p = counts[counts > 0] / max(len(self), 1)
            entropy = float(-(p * np.log(p)).sum())
            per_level.append({"level": level + 1, "used": int((counts > 0).sum()),
                              "usage": float((counts > 0).sum() / self.codebook_size),
                              "entropy": entropy, "perplexity": math.exp(entropy)})
        if len(self):
            _, inverse, sizes = np.unique(self.codes[:, :-1], axis=0, return_inverse=True, return_counts=True)
            shared = sizes[inverse.ravel()] > 1
            rate, depth = float(shared.mean()), int(sizes.max())
        else:
            rate, depth = 0.0, 0
        return {"n_items": len(self), "levels": per_level, "collision_rate": rate, "max_collision_depth": depth}

    # ---- persistence ------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Codes as safetensors, ids and sizes as JSON (never pickle)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        save_file({"codes": np.ascontiguousarray(self.codes)}, str(out / CODES_FILE))
        meta = {"format_version": FORMAT_VERSION, "method": self.method, "codebook_size": self.codebook_size,
                "item_ids": list(self.item_ids)}
        (out / META_FILE).write_text(json.dumps(meta))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> SemanticIds:
        """Read ids written by ``save``; a missing or foreign folder is a ConfigError naming it."""
        path = Path(directory)
        meta_path = path / META_FILE
        if not meta_path.exists() or not (path / CODES_FILE).exists():
            raise ConfigError(f"{path}: no saved semantic ids ({META_FILE} and {CODES_FILE} expected)")
        meta = load_json_record(meta_path, version=FORMAT_VERSION, what="semantic-id record")
        codes = load_file(str(path / CODES_FILE))["codes"]
        return cls(tuple(meta["item_ids"]), codes, int(meta["codebook_size"]), str(meta.get("method", "rqkmeans")))


# ---- building -----------------------------------------------------------------------------------------
def quantise_items(
    item_ids: Sequence[str],
    embeddings: np.ndarray,
    *,
    method: str = "rqkmeans",
    levels: int = 3,
    codebook_size: int = 256,
    seed: int = 0,
    **options: Any,
) -> SemanticIds:
    """Semantic ids of ``item_ids`` from their embeddings (n_items, d), one row per item in that order.
    ``options`` go to ``RQKMeans`` or ``RQVAE``. Item texts are embedded a layer up
    (``recllm.train.semantic_ids.build_semantic_ids``), so this module needs no language model."""
    ids = [str(i) for i in item_ids]
    if method not in METHODS:
        raise ConfigError(f"semantic ids: unknown method '{method}'; use one of {', '.join(METHODS)}")
    _check_levels(levels, codebook_size, len(ids))
    vectors = np.asarray(embeddings, dtype=np.float64)
    if vectors.ndim != 2 or len(vectors) != len(ids):
        raise ConfigError(f"semantic ids: embeddings must be (n_items={len(ids)}, dim), got {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ConfigError("semantic ids: embeddings contain NaN or infinite values")
    quantiser: RQKMeans | RQVAE
    try:
        if method == "rqkmeans":
            quantiser = RQKMeans(levels=levels, codebook_size=codebook_size, seed=seed, **options)
        else:
            quantiser = RQVAE(levels=levels, codebook_size=codebook_size, seed=seed, **options)
    except TypeError as exc:
        raise ConfigError(f"semantic ids: bad option for {method}: {exc}") from None
    codes = quantiser.fit(vectors).encode(vectors)
    result = SemanticIds.from_codes(ids, codes, codebook_size, method)
    stats = result.stats()
    log.info("semantic ids (%s, %d x %d) for %d items: codebook use %s, collision rate %.3f, max depth %d",
             method, levels, codebook_size, len(ids),
             "/".join(f"{lv['usage']:.2f}" for lv in stats["levels"]), stats["collision_rate"],
             stats["max_collision_depth"])
    return result
