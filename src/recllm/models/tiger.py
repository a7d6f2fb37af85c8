"""TIGER (Rajput et al., 2023): generative retrieval that writes the next item's semantic id code by code.

Architecture: an encoder-decoder transformer, as in the paper. The encoder reads the user's last
``max_items`` items as their flattened code tuples (token + level + item-position embeddings, then an end
token); the decoder emits the next item's codes one level at a time, each level with its own output head.
Encoder-decoder rather than decoder-only because the history is encoded once per user and the short
4-step decoding then only attends to it: beam search re-runs just a 1-4 token decoder per step.

Training is teacher-forced cross-entropy over the target's codes, sliding over each training sequence
(every prefix's next item is a target, the newest ``max_targets_per_user`` per user). Ranking uses beam
search constrained by a trie of the valid code tuples, so every generated id is a real item
(``invalid_generations_`` counts the exceptions and stays 0). ``score`` gives the ``beam_size`` generated
items their sequence log-probability and every other item ``NOT_GENERATED`` (a very low constant): under
the pessimistic-ties full protocol those tie at the bottom, which is the honest reading of a generative
retriever. With ``beam_exclude_history`` (default) beams are never spent on items the user already has;
set ``beam_size`` comfortably above the cut-off K of the evaluation (K + 10 or more).

Where the item texts come from, first match wins: ``with_semantic_ids(ids)``; ``semantic_ids_dir`` (a
folder written by ``SemanticIds.save``); ``with_item_embeddings(...)`` or ``with_catalog(catalog, embeddings)``.
TIGER reads item text (``recllm.models.text.ReadsItemText``): built through
``recllm.pipeline.build_retriever`` it is handed the ``embedder``'s vectors of the catalog texts of
``catalog`` (default ``"auto"``: the data being fitted, e.g. ``movielens-100k``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional

from recllm.config import checked
from recllm.data.dataset import Dataset
from recllm.errors import ConfigError
from recllm.models.base import Recommender, register
from recllm.models.early_stopping import EpochOutcome, train_epochs
from recllm.models.semantic_ids import SemanticIds, quantise_items
from recllm.models.text import ItemEmbeddings, ItemTextInput
from recllm.models.trie import CodeTrie, constrained_beam_search
from recllm.ranking import ndcg_from_ranks, pessimistic_ranks
from recllm.torch_runtime import loadable_device, pick_device, torch_threads

if TYPE_CHECKING:
    from recllm.data.catalog import ItemCatalog

log = logging.getLogger(__name__)

PAD, BOS, EOS = 0, 1, 2
"""Special tokens; code c of level l is token ``_FIRST_CODE + offset[l] + c``."""
_FIRST_CODE = 3
NOT_GENERATED = -1.0e9
"""Score of every item the beam search did not produce: all tie at the bottom of the ranking."""
_SCORE_BATCH = 128


class _TigerNet(nn.Module):
    """Shared code-token embeddings, a transformer encoder over the history, a decoder with one head per level."""

    def __init__(self, level_sizes: Sequence[int], max_items: int, hidden: int, n_layers: int, n_heads: int,
                 ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.level_sizes = tuple(int(s) for s in level_sizes)
        self.depth = len(self.level_sizes)
        self.hidden = hidden
        offsets = np.concatenate([[0], np.cumsum(self.level_sizes)[:-1]]).astype(np.int64)
        self.register_buffer("offsets", torch.from_numpy(offsets), persistent=False)
        self.token_emb = nn.Embedding(_FIRST_CODE + sum(self.level_sizes), hidden, padding_idx=PAD)
        self.level_emb = nn.Embedding(self.depth + 1, hidden)  # code level; the last row marks EOS
        self.slot_emb = nn.Embedding(max_items + 1, hidden)  # item position from the newest (0 = EOS)
        self.dec_pos_emb = nn.Embedding(self.depth, hidden)

        def encoder_layer() -> nn.TransformerEncoderLayer:
            return nn.TransformerEncoderLayer(hidden, n_heads, ff_dim, dropout, activation="gelu",
                                              batch_first=True, norm_first=True)

        def decoder_layer() -> nn.TransformerDecoderLayer:
            return nn.TransformerDecoderLayer(hidden, n_heads, ff_dim, dropout, activation="gelu",
                                              batch_first=True, norm_first=True)

        self.encoder = nn.TransformerEncoder(encoder_layer(), n_layers, norm=nn.LayerNorm(hidden),
                                             enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(decoder_layer(), n_layers, norm=nn.LayerNorm(hidden))
        self.heads = nn.ModuleList(nn.Linear(hidden, size) for size in self.level_sizes)
        self.drop = nn.Dropout(dropout)

    def code_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """Token ids of code tuples (..., t) whose column l is a level-l code."""
        offsets = self.get_buffer("offsets")
        return codes + offsets[:codes.shape[-1]] + _FIRST_CODE

    def encode(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory (B, S, H) and its padding mask of left-padded histories given as code tuples (B, W, depth),
        padding rows holding -1; an EOS token closes every history, so an empty one is still attendable."""
        batch, width, depth = items.shape
        real = items[..., 0] >= 0
        tokens = torch.where(real[..., None], self.code_tokens(items.clamp(min=0)), PAD).reshape(batch, -1)
        levels = torch.arange(depth, device=items.device).repeat(width)
        slots = torch.arange(width, 0, -1, device=items.device).repeat_interleave(depth)
        x = self.token_emb(tokens) + self.level_emb(levels)[None] + self.slot_emb(slots)[None]
        eos = (self.token_emb.weight[EOS] + self.level_emb.weight[depth] + self.slot_emb.weight[0])
        x = torch.cat([x, eos.expand(batch, 1, -1)], dim=1)
        padding = torch.cat([(tokens == PAD), torch.zeros(batch, 1, dtype=torch.bool, device=items.device)], 1)
        return self.encoder(self.drop(x), src_key_padding_mask=padding), padding

    def decode(self, memory: torch.Tensor, padding: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Decoder states (B, t + 1, H) for target code prefixes (B, t): BOS then the codes."""
        batch, length = prefix.shape
        bos = torch.full((batch, 1), BOS, dtype=torch.long, device=prefix.device)
        tokens = torch.cat([bos, self.code_tokens(prefix)], dim=1)
        x = self.token_emb(tokens) + self.dec_pos_emb.weight[:length + 1][None]
        causal = torch.ones(length + 1, length + 1, dtype=torch.bool, device=prefix.device).triu(1)
        return self.decoder(self.drop(x), memory, tgt_mask=causal, memory_key_padding_mask=padding)

    def loss(self, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Teacher-forced mean cross-entropy over the depth codes of each target tuple (B, depth)."""
        memory, padding = self.encode(items)
        states = self.decode(memory, padding, targets[:, :-1])
        losses = [functional.cross_entropy(head(states[:, level]).float(), targets[:, level])
                  for level, head in enumerate(self.heads)]
        return torch.stack(losses).mean()


@register
class TIGER(ItemTextInput, Recommender):
    """Generative retrieval over semantic ids with trie-constrained beam search (see module docstring)."""

    name = "tiger"

    @checked()
    def __init__(
        self,
        max_items: Annotated[int, Field(ge=1, description="newest history items the encoder reads")] = 20,
        hidden: Annotated[int, Field(ge=1)] = 128,
        n_layers: Annotated[int, Field(ge=1)] = 2,
        n_heads: Annotated[int, Field(ge=1)] = 4,
        ff_dim: Annotated[int, Field(ge=1)] = 512,
        dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1,
        lr: Annotated[float, Field(gt=0.0)] = 1e-3,
        weight_decay: Annotated[float, Field(ge=0.0)] = 0.01,
        batch_size: Annotated[int, Field(ge=1)] = 256,
        epochs: Annotated[int, Field(ge=1)] = 100,
        patience: Annotated[int, Field(ge=1)] = 5,
        eval_every: Annotated[int, Field(ge=1)] = 1,
        max_targets_per_user: Annotated[int, Field(ge=1)] = 50,
        beam_size: Annotated[int, Field(ge=1)] = 20,
        beam_exclude_history: bool = True,
        ids_method: Literal["rqkmeans", "rqvae"] = "rqkmeans",
        levels: Annotated[int, Field(ge=1)] = 3,
        codebook_size: Annotated[int, Field(ge=2)] = 256,
        catalog: str = "auto",
        semantic_ids_dir: str | None = None,
        embedder: str = "st",
        seed: int = 0,
        device: str = "auto",
        amp: bool = True,
        num_threads: Annotated[int, Field(ge=0)] = 0,
    ) -> None:
        super().__init__()
        if hidden % n_heads:
            raise ConfigError(f"tiger: hidden ({hidden}) must be divisible by n_heads ({n_heads})")
        self.max_items = max_items
        self.hidden = hidden
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.ff_dim = ff_dim
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.eval_every = eval_every
        self.max_targets_per_user = max_targets_per_user
        self.beam_size = beam_size
        self.beam_exclude_history = beam_exclude_history
        self.ids_method = ids_method
        self.levels = levels
        self.codebook_size = codebook_size
        self.catalog = catalog
        self.semantic_ids_dir = semantic_ids_dir
        self.embedder = embedder
        self.seed = seed
        self.device = device
        self.amp = amp
        self.num_threads = num_threads
        self.net: _TigerNet | None = None
        self.semantic_ids_: SemanticIds | None = None
        self.trie_: CodeTrie | None = None
        self.history_: list[dict[str, Any]] = []
        self.best_epoch_: int | None = None
        self.invalid_generations_ = 0
        self.masked_preferences_ = 0
        self._given_ids: SemanticIds | None = None
        self._given_catalog: ItemCatalog | None = None
        self._given_embeddings: np.ndarray | None = None
        self._item_embeddings: ItemEmbeddings | None = None

    # ---- where the semantic ids come from ---------------------------------------------------------
    def with_semantic_ids(self, semantic_ids: SemanticIds) -> Self:
        """Use these precomputed ids in ``fit`` (they must cover every item of the training dataset)."""
        self._given_ids = semantic_ids
        return self

    def with_catalog(self, catalog: ItemCatalog, embeddings: np.ndarray) -> Self:
        """Build ids in ``fit`` from ``embeddings`` of this catalog's item texts (rows in item-vocab order)."""
        self._given_catalog = catalog
        self._given_embeddings = np.asarray(embeddings)
        return self

    @property
    def text_catalog(self) -> str:  # type: ignore[override]  # TIGER names the parameter ``catalog``
        return self.catalog

    def needs_item_embeddings(self) -> bool:
        return (self._given_ids is None and self.semantic_ids_dir is None and self._given_embeddings is None
                and self._item_embeddings is None)

    def _semantic_ids_for(self, dataset: Dataset) -> SemanticIds:
        item_ids = list(dataset.item_vocab.ids)
        if self._given_ids is not None:
            return self._given_ids.aligned(item_ids)
        if self.semantic_ids_dir is not None:
            return SemanticIds.load(self.semantic_ids_dir).aligned(item_ids)
        if self._item_embeddings is not None:
            vectors = self._item_embeddings.aligned(item_ids)
        elif self._given_embeddings is not None:
            vectors = self._given_embeddings
        else:
            raise ConfigError(f"tiger: cannot find item texts for dataset '{dataset.name}'; build the model with "
                              "recllm.pipeline.build_retriever (as evaluate, recommend and serve do: it embeds the "
                              "catalog), set semantic_ids_dir, or call with_item_embeddings(...) / "
                              "with_semantic_ids(...) before fit")
        return quantise_items(item_ids, vectors, method=self.ids_method, levels=self.levels,
                              codebook_size=self.codebook_size, seed=self.seed)

    # ---- helpers ----------------------------------------------------------------------------------
    def _torch_device(self) -> torch.device:
        return pick_device(self.device)

    def _autocast(self, device: torch.device) -> AbstractContextManager[Any]:
        if self.amp and device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _threads(self) -> AbstractContextManager[None]:
        """Run with ``num_threads`` torch threads (0 keeps torch's default), restoring it after."""
        return torch_threads(self.num_threads)

    def _build(self, level_sizes: Sequence[int]) -> _TigerNet:
        net = _TigerNet(level_sizes, self.max_items, self.hidden, self.n_layers, self.n_heads, self.ff_dim,
                        self.dropout)
        return net.to(self._torch_device())

    def _set_ids(self, semantic_ids: SemanticIds) -> None:
        self.semantic_ids_ = semantic_ids
        self.trie_ = CodeTrie(semantic_ids.codes, semantic_ids.level_sizes)

    def _history_codes(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Left-padded code tuples (B, W, depth) of each history's newest ``max_items`` items; -1 pads."""
        assert self.semantic_ids_ is not None
        codes = self.semantic_ids_.codes
        width = max(1, min(self.max_items, max((len(h) for h in histories), default=0)))
        out = np.full((len(histories), width, codes.shape[1]), -1, dtype=np.int64)
        for row, hist in enumerate(histories):
            tail = np.asarray(hist, dtype=np.int64)[-width:]
            if len(tail):
                out[row, width - len(tail):] = codes[tail]
        return out

    # ---- training ---------------------------------------------------------------------------------
    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        self._set_ids(self._semantic_ids_for(dataset))
        assert self.semantic_ids_ is not None
        device = self._torch_device()
        cuda = [] if device.type != "cuda" else [torch.cuda.current_device() if device.index is None
                                                 else device.index]
        with self._threads(), torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seed)
            self.net = self._build(self.semantic_ids_.level_sizes)
            self._train(dataset, valid, device)
        self.net.eval()

    def _examples(self, dataset: Dataset) -> tuple[list[np.ndarray], np.ndarray]:
        """(history before the target, target item) for the newest ``max_targets_per_user`` targets per user."""
        histories: list[np.ndarray] = []
        targets: list[int] = []
        for seq in dataset.sequences():
            for j in range(max(1, len(seq) - self.max_targets_per_user), len(seq)):
                histories.append(seq[max(0, j - self.max_items):j])
                targets.append(int(seq[j]))
        return histories, np.asarray(targets, dtype=np.int64)

    def _train(self, dataset: Dataset, valid: Dataset | None, device: torch.device) -> None:
        assert self.net is not None and self.semantic_ids_ is not None
        net = self.net
        rng = np.random.default_rng(self.seed)
        histories, targets = self._examples(dataset)
        if not len(targets):
            log.warning("tiger: no user has two or more interactions; the model stays untrained")
            return
        target_codes = torch.from_numpy(self.semantic_ids_.codes[targets])
        valid_task = self._valid_task(dataset, valid) if valid is not None else None
        optimizer = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        log.info("tiger: training on %d targets from %d users, %d items (%s), device %s", len(targets),
                 dataset.n_users, dataset.n_items, "x".join(map(str, self.semantic_ids_.level_sizes)), device)

        def train_epoch() -> float:
            total = 0.0
            order = rng.permutation(len(targets))
            for begin in range(0, len(order), self.batch_size):
                rows = order[begin:begin + self.batch_size]
                items = torch.from_numpy(self._history_codes([histories[r] for r in rows])).to(device)
                with self._autocast(device):
                    loss = net.loss(items, target_codes[torch.from_numpy(rows)].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(rows)
            return total / len(targets)

        validate = (lambda: self._valid_ndcg(*valid_task)) if valid_task is not None else None
        outcome = EpochOutcome()
        self.history_, self.best_epoch_ = outcome.history, None
        train_epochs("tiger", net, epochs=self.epochs, eval_every=self.eval_every, patience=self.patience,
                     train_epoch=train_epoch, validate=validate, outcome=outcome)
        self.best_epoch_ = outcome.best_epoch

    def _valid_task(self, dataset: Dataset, valid: Dataset) -> tuple[list[np.ndarray], np.ndarray]:
        if valid.n_items != dataset.n_items:
            raise ConfigError("tiger: valid must share the item vocabulary of the training dataset")
        return [dataset.sequence(int(u)) for u in valid.users], np.asarray(valid.items, dtype=np.int64)

    def _valid_ndcg(self, histories: list[np.ndarray], targets: np.ndarray) -> float:
        """Mean NDCG@10 of the generated ranking, training items excluded, ties pessimistic."""
        if len(targets) == 0:
            return 0.0
        ndcg = np.empty(len(targets))
        for begin in range(0, len(targets), _SCORE_BATCH):
            chunk = histories[begin:begin + _SCORE_BATCH]
            scores = self._score_histories(chunk)
            for row, hist in enumerate(chunk):
                scores[row, hist] = -np.inf
            ndcg[begin:begin + len(chunk)] = ndcg_from_ranks(
                pessimistic_ranks(scores, targets[begin:begin + len(chunk)]), 10)
        return float(ndcg.mean())

    # ---- generation and scoring -------------------------------------------------------------------
    def generate(self, histories: Sequence[np.ndarray], beam_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top generated items (B, beam) as item indices (-1 pads), best first, with their log-probabilities."""
        self._require_fitted()
        assert self.net is not None and self.trie_ is not None
        net = self.net
        beam = beam_size or self.beam_size
        was_training = net.training
        net.eval()
        device = next(net.parameters()).device
        try:
            with torch.no_grad(), self._autocast(device):
                memory, padding = net.encode(torch.from_numpy(self._history_codes(histories)).to(device))

                def step(rows: np.ndarray, prefix: np.ndarray) -> np.ndarray:
                    index = torch.from_numpy(rows).to(device)
                    states = net.decode(memory[index], padding[index], torch.from_numpy(prefix).to(device))
                    logits = net.heads[prefix.shape[1]](states[:, -1]).float()
                    return functional.log_softmax(logits, dim=-1).cpu().numpy()

                excluded = [np.asarray(h, dtype=np.int64) for h in histories] if self.beam_exclude_history else None
                result = constrained_beam_search(step, self.trie_, len(histories), beam, excluded=excluded)
        finally:
            net.train(was_training)
        self.invalid_generations_ += result.invalid
        self.masked_preferences_ += result.masked_preferences
        return result.items, result.scores

    def _score_histories(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        items, logp = self.generate(histories)
        scores = np.full((len(histories), self.n_items), NOT_GENERATED, dtype=np.float32)
        rows, cols = np.nonzero(items >= 0)
        scores[rows, items[rows, cols]] = logp[rows, cols]
        return scores

    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        """(len(users), n_items) float32: beam items get their log-probability, the rest ``NOT_GENERATED``."""
        self._require_fitted()
        if len(users) != len(histories):
            raise ConfigError(f"tiger.score: {len(users)} users but {len(histories)} histories")
        out = np.empty((len(histories), self.n_items), dtype=np.float32)
        with self._threads():
            for begin in range(0, len(histories), _SCORE_BATCH):
                out[begin:begin + _SCORE_BATCH] = self._score_histories(histories[begin:begin + _SCORE_BATCH])
        return out

    # ---- persistence ------------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        if self.net is None or self.semantic_ids_ is None:
            return {}
        arrays = {f"net.{name}": tensor.detach().float().cpu().numpy()
                  for name, tensor in self.net.state_dict().items()}
        arrays["ids.codes"] = np.asarray(self.semantic_ids_.codes, dtype=np.int64)
        arrays["ids.codebook_size"] = np.array([self.semantic_ids_.codebook_size], dtype=np.int64)
        return arrays

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        assert self.item_vocab is not None
        self.device = loadable_device(self.device, "tiger")
        codebook_size = int(arrays.pop("ids.codebook_size")[0])
        self._set_ids(SemanticIds(tuple(self.item_vocab.ids), arrays.pop("ids.codes"), codebook_size,
                                  self.ids_method))
        assert self.semantic_ids_ is not None
        self.net = self._build(self.semantic_ids_.level_sizes)
        state = {name.removeprefix("net."): torch.tensor(np.array(value)) for name, value in arrays.items()}
        self.net.load_state_dict(state)
        self.net.eval()

    def save_semantic_ids(self, directory: str | Path) -> Path:
        """Write the ids used by this model (for prompts or another model) with ``SemanticIds.save``."""
        self._require_fitted()
        assert self.semantic_ids_ is not None
        return self.semantic_ids_.save(directory)
