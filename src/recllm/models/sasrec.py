"""SASRec: a self-attentive sequential recommender (Kang & McAuley, 2018), trained the "SASRec+" way.

Training uses full-catalogue cross-entropy at every position of the sequence (Klenitskiy & Vasilev,
2023), which converges faster and ranks better than the original one-negative binary loss; a sampled
softmax option keeps the cost bounded on large catalogues. Output logits reuse the item embeddings.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn
from torch.nn import functional

from recllm.config import checked
from recllm.data.dataset import Dataset
from recllm.errors import ConfigError
from recllm.models import ptum
from recllm.models.base import Recommender, register
from recllm.models.early_stopping import EpochOutcome, train_epochs
from recllm.models.text import ItemEmbeddings, ItemTextInput
from recllm.progress import training_progress
from recllm.ranking import ndcg_from_ranks, pessimistic_ranks
from recllm.torch_runtime import loadable_device, pick_device, torch_threads

log = logging.getLogger(__name__)

PAD = 0
"""Index of the padding token; item index ``i`` is token ``i + 1`` inside the network."""

_SCORE_BATCH = 256
_BUCKET_BATCHES = 8
_MIN_EXP = -80.0
"""exp(-80) is about 1.8e-35, still a normal float32; the error it adds to a softmax is negligible."""
_CE_CHUNK = {"cpu": 512, "cuda": 16384}
"""Rows of logits materialised at a time by the full cross-entropy (CPU: stay in cache)."""


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``states @ weights.T`` against ``targets``, built chunk by chunk.

    Never holds the (N, n_items) logits at once: the forward keeps only each row's log-sum-exp and
    the backward recomputes a chunk's logits. On CPU this is about twice as fast as the plain cross
    entropy because the logits stay in cache. Exponents are clamped at ``_MIN_EXP`` so ``exp`` never
    produces subnormal floats, which take a slow path on x86 (a trained model has many such items).
    """

    @staticmethod
    def forward(ctx: Any, states: torch.Tensor, weights: torch.Tensor, targets: torch.Tensor,
                chunk: int) -> torch.Tensor:
        lse = torch.empty(len(states), dtype=states.dtype, device=states.device)
        for begin in range(0, len(states), chunk):
            logits = states[begin:begin + chunk] @ weights.T
            top = logits.amax(dim=1, keepdim=True)
            total = logits.sub_(top).clamp_(min=_MIN_EXP).exp_().sum(dim=1)
            lse[begin:begin + chunk] = total.log_() + top[:, 0]
        picked = (states * weights[targets]).sum(dim=1)
        ctx.save_for_backward(states, weights, targets, lse)
        ctx.chunk = chunk
        return (lse - picked).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        states, weights, targets, lse = ctx.saved_tensors
        grad_states = torch.empty_like(states)
        grad_weights = torch.zeros_like(weights)
        scale = float(grad) / len(states)
        for begin in range(0, len(states), ctx.chunk):
            part = states[begin:begin + ctx.chunk]
            probs = part @ weights.T
            probs.sub_(lse[begin:begin + ctx.chunk, None]).clamp_(min=_MIN_EXP).exp_()
            rows = torch.arange(len(part), device=part.device)
            probs[rows, targets[begin:begin + ctx.chunk]] -= 1.0
            torch.mm(probs, weights, out=grad_states[begin:begin + ctx.chunk])
            grad_weights.addmm_(probs.T, part)
        return grad_states.mul_(scale), grad_weights.mul_(scale), None, None


class _Block(nn.Module):
    """Pre-LayerNorm causal self-attention block with a point-wise feed-forward layer."""

    def __init__(self, hidden: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.attn_norm = nn.LayerNorm(hidden, eps=1e-8)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=1e-8)
        self.ffn = nn.Sequential(
            nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, hidden),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``x`` (B, T, H); ``allowed`` (B, 1, T, T) boolean: which keys each query may attend to."""
        batch, length, hidden = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).chunk(3, dim=-1)
        shape = (batch, length, self.n_heads, hidden // self.n_heads)
        q, k, v = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))
        att = functional.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed,
        )
        x = x + self.drop(self.out(att.transpose(1, 2).reshape(batch, length, hidden)))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


def _init_from_text(weights: torch.Tensor, text: torch.Tensor) -> None:
    """Id embeddings (n_items + 1, H) initialised in place from the top-H principal components of the item-text
    vectors (row 0, padding, stays zero), scaled to the spread of the initialisation they replace."""
    rows = text[1:].double()
    centred = rows - rows.mean(dim=0, keepdim=True)
    u, s, _ = torch.linalg.svd(centred, full_matrices=False)
    width = min(weights.shape[1], len(s))
    projected = (u[:, :width] * s[:width]).float()
    with torch.no_grad():
        scale = weights[1:].std() / projected.std().clamp_min(1e-12)
        weights[1:].zero_()
        weights[1:, :width] = projected * scale
        weights[PAD].zero_()


class _SASRecNet(nn.Module):
    """Embeddings, causal transformer blocks and a final LayerNorm; logits use the item table.

    The item table is the learned id embeddings, or (``fusion`` "concat" / "add") those together with a
    semantic view: frozen item-text vectors ``text`` (n_items + 1, d; row 0 padding) through a two-layer
    adapter, beside (concatenated to half of ``hidden``) or added to the id embeddings.
    """

    def __init__(self, n_items: int, max_len: int, hidden: int, n_blocks: int, n_heads: int,
                 dropout: float, *, text: torch.Tensor | None = None, fusion: str = "none",
                 adapter_hidden: int = 256) -> None:
        super().__init__()
        self.max_len = max_len
        self.hidden = hidden
        self.fusion = fusion if text is not None else "none"
        semantic = hidden // 2 if self.fusion == "concat" else hidden
        id_dim = hidden - semantic if self.fusion == "concat" else hidden
        self.item_emb = nn.Embedding(n_items + 1, id_dim, padding_idx=PAD)
        if self.fusion in ("concat", "add"):
            assert text is not None
            self.register_buffer("text", text.float())
            self.adapter = nn.Sequential(nn.Linear(text.shape[1], adapter_hidden), nn.GELU(),
                                         nn.Linear(adapter_hidden, semantic))
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.emb_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(hidden, n_heads, dropout) for _ in range(n_blocks))
        self.final_norm = nn.LayerNorm(hidden, eps=1e-8)
        self._init_weights()

    def _init_weights(self) -> None:
        for name, param in self.named_parameters():
            if param.dim() > 1:
                nn.init.xavier_normal_(param)
            elif name.endswith("bias"):
                nn.init.zeros_(param)
        with torch.no_grad():
            self.item_emb.weight[PAD].zero_()

    def forward(self, tokens: torch.Tensor, *, masked: torch.Tensor | None = None,
                mask_vector: torch.Tensor | None = None, causal: bool = True) -> torch.Tensor:
        """Hidden states (B, T, H) of left-padded token sequences (B, T), T <= max_len.

        Positions count from the right, so the newest item always has the same position embedding
        however long the batch is padded. A query attends to non-padding keys at or before it and to
        itself, so an all-padding row never has an empty attention set (no NaN). Pre-training (see
        ``recllm.models.ptum``) replaces the embeddings at ``masked`` positions by ``mask_vector`` and may
        let every position see the whole sequence (``causal=False``).
        """
        length = tokens.shape[1]
        real = tokens != PAD
        positions = torch.arange(self.max_len - length, self.max_len, device=tokens.device)
        items = functional.embedding(tokens, self.item_table())
        if masked is not None and mask_vector is not None:
            items = torch.where(masked[..., None], mask_vector.to(items.dtype), items)
        x = items * math.sqrt(self.hidden) + self.pos_emb(positions)[None]
        x = self.emb_drop(x) * real[..., None]
        eye = torch.eye(length, dtype=torch.bool, device=tokens.device)
        if causal:
            lower = torch.ones(length, length, dtype=torch.bool, device=tokens.device).tril()
            allowed = ((lower[None] & real[:, None, :]) | eye[None])[:, None]
        else:
            allowed = (real[:, None, :] | eye[None])[:, None]
        for block in self.blocks:
            x = block(x, allowed) * real[..., None]
        return self.final_norm(x)

    def item_table(self) -> torch.Tensor:
        """Item representations (n_items + 1, H), row 0 (padding) zero: input and output embeddings alike."""
        if self.fusion not in ("concat", "add"):
            return self.item_emb.weight
        semantic = self.adapter(self.get_buffer("text"))
        semantic = torch.cat([torch.zeros_like(semantic[:1]), semantic[1:]])
        if self.fusion == "concat":
            return torch.cat([self.item_emb.weight, semantic], dim=1)
        return self.item_emb.weight + semantic

    def item_weights(self) -> torch.Tensor:
        """Output embeddings of the real items (n_items, H), padding row left out."""
        return self.item_table()[1:]


@register
class SASRec(ItemTextInput, Recommender):
    """Self-attentive sequential recommender with full cross-entropy (or sampled softmax) training.

    Scores the next item from the newest position of a history, so it serves ad-hoc histories and
    known users alike. Early stopping on NDCG@10 over ``valid`` keeps the best weights. ``pretrain``
    (``mbp``, ``nbp`` or ``both``) first runs ``pretrain_epochs`` of PTUM self-supervised pre-training
    (``recllm.models.ptum``: ``mask_share`` of the items masked, the next ``next_k`` items predicted) at
    ``pretrain_lr`` (default ``lr``).

    ``windows="last"`` trains on each user's newest ``max_len + 1`` items (the original recipe); ``"all"``
    cuts every sequence into windows of ``max_len + 1`` items from the newest back, so each training
    interaction is a target once per epoch however long the history (RecBole's prefixes do the same). The
    learning rate rises linearly over ``warmup_epochs`` and then stays (``lr_schedule="constant"``) or
    follows a cosine down to ``min_lr_ratio * lr`` at ``epochs`` (``"cosine"``).

    Item text (``text`` other than ``"none"``; the model then follows ``ReadsItemText`` and gets the
    ``embedder``'s vectors of the catalog texts from the composition layer): ``"concat"`` puts a semantic view
    (the frozen vectors through an ``adapter_hidden``-wide two-layer adapter) beside the id embeddings, half of
    ``hidden`` each, as in LLM-ESR's dual view; ``"add"`` adds it to full-width id embeddings; ``"init"``
    starts the id embeddings from the vectors' principal components and trains them freely. ``profiles`` names
    an LLM whose checked item profiles join the item texts before they are embedded (``"none"``: facts only).
    """

    name = "sasrec"

    @checked()
    def __init__(
        self,
        max_len: Annotated[int, Field(ge=1, description="newest items of a history the network reads")] = 200,
        hidden: Annotated[int, Field(ge=1)] = 64,
        n_blocks: Annotated[int, Field(ge=1)] = 2,
        n_heads: Annotated[int, Field(ge=1)] = 1,
        dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2,
        lr: Annotated[float, Field(gt=0.0)] = 1e-3,
        weight_decay: Annotated[float, Field(ge=0.0)] = 0.0,
        batch_size: Annotated[int, Field(ge=1)] = 128,
        epochs: Annotated[int, Field(ge=1)] = 200,
        patience: Annotated[int, Field(ge=1)] = 10,
        eval_every: Annotated[int, Field(ge=1)] = 1,
        loss: Literal["ce", "sampled"] = "ce",
        n_negatives: Annotated[int, Field(ge=1)] = 256,
        seed: int = 0,
        device: str = "auto",
        num_threads: Annotated[int, Field(ge=0)] = 0,
        pretrain: Literal["none", "mbp", "nbp", "both"] = "none",
        pretrain_epochs: Annotated[int, Field(ge=1)] = 10,
        mask_share: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2,
        next_k: Annotated[int, Field(ge=1)] = 3,
        pretrain_lr: Annotated[float, Field(gt=0.0)] | None = None,
        windows: Literal["last", "all"] = "last",
        warmup_epochs: Annotated[float, Field(ge=0.0)] = 0.0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        min_lr_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0,
        text: Literal["none", "concat", "add", "init"] = "none",
        embedder: str = "st",
        text_catalog: str = "auto",
        adapter_hidden: Annotated[int, Field(ge=1)] = 256,
        profiles: str = "none",
    ) -> None:
        super().__init__()
        if hidden % n_heads:
            raise ConfigError(f"sasrec: hidden ({hidden}) must be divisible by n_heads ({n_heads})")
        self.max_len = max_len
        self.hidden = hidden
        self.n_blocks = n_blocks
        self.n_heads = n_heads
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.eval_every = eval_every
        self.loss = loss
        self.n_negatives = n_negatives
        self.seed = seed
        self.device = device
        self.num_threads = num_threads
        self.pretrain = pretrain
        self.pretrain_epochs = pretrain_epochs
        self.mask_share = mask_share
        self.next_k = next_k
        self.pretrain_lr = pretrain_lr
        self.windows = windows
        self.warmup_epochs = warmup_epochs
        self.lr_schedule = lr_schedule
        self.min_lr_ratio = min_lr_ratio
        self.text = text
        self.embedder = embedder
        self.text_catalog = text_catalog
        self.adapter_hidden = adapter_hidden
        self.profiles = profiles
        self._item_embeddings: ItemEmbeddings | None = None
        self.net: _SASRecNet | None = None
        self.history_: list[dict[str, Any]] = []
        self.pretrain_history_: list[dict[str, Any]] = []
        self.best_epoch_: int | None = None

    # ---- helpers ----------------------------------------------------------------------------------
    def _torch_device(self) -> torch.device:
        return pick_device(self.device)

    def _build(self, n_items: int, text: torch.Tensor | None = None) -> _SASRecNet:
        net = _SASRecNet(n_items, self.max_len, self.hidden, self.n_blocks, self.n_heads, self.dropout,
                         text=text, fusion=self.text, adapter_hidden=self.adapter_hidden)
        if text is not None and self.text == "init":
            _init_from_text(net.item_emb.weight, text)
        return net.to(self._torch_device())

    # ---- item text (ReadsItemText) ----------------------------------------------------------------
    def needs_item_embeddings(self) -> bool:
        return self.text != "none" and self._item_embeddings is None and self.net is None

    def _text_rows(self, dataset: Dataset) -> torch.Tensor | None:
        """(n_items + 1, d) text vectors in the dataset's item order behind a zero padding row, or None."""
        if self.text == "none":
            return None
        if self._item_embeddings is None:
            raise ConfigError(f"sasrec: text='{self.text}' needs item-text embeddings for dataset "
                              f"'{dataset.name}'; build the model with recllm.pipeline.build_retriever (as "
                              "evaluate, recommend and serve do) or call with_item_embeddings(...) before fit")
        vectors = self._item_embeddings.aligned(list(dataset.item_vocab.ids))
        rows = torch.from_numpy(np.asarray(vectors, dtype=np.float32))
        return torch.cat([torch.zeros(1, rows.shape[1]), rows])

    def _threads(self) -> AbstractContextManager[None]:
        """Run with ``num_threads`` torch threads (0 keeps torch's default), restoring it after."""
        return torch_threads(self.num_threads)

    def _pad(self, histories: Sequence[np.ndarray], length: int) -> np.ndarray:
        """Left-padded token matrix (len(histories), max(1, longest)) of the last ``length`` items."""
        width = max(1, min(length, max((len(h) for h in histories), default=0)))
        out = np.zeros((len(histories), width), dtype=np.int64)
        for row, hist in enumerate(histories):
            tail = np.asarray(hist[len(hist) - width:] if len(hist) > width else hist, dtype=np.int64)
            if len(tail):
                out[row, width - len(tail):] = tail + 1
        return out

    # ---- training ---------------------------------------------------------------------------------
    def _fit(self, dataset: Dataset, valid: Dataset | None) -> None:
        device = self._torch_device()
        cuda = [] if device.type != "cuda" else [torch.cuda.current_device() if device.index is None
                                                 else device.index]
        # seed a private copy of torch's RNG state so fitting neither depends on nor disturbs the caller's
        with self._threads(), torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seed)
            self.net = self._build(dataset.n_items, self._text_rows(dataset))
            self._train(dataset, valid, device)
        self.net.eval()

    def _train(self, dataset: Dataset, valid: Dataset | None, device: torch.device) -> None:
        assert self.net is not None
        net = self.net
        rng = np.random.default_rng(self.seed)
        sampler = torch.Generator(device=device)
        sampler.manual_seed(self.seed)
        # windows of max_len + 1 items: inputs are all but the newest, targets all but the oldest
        sequences = [w for s in dataset.sequences() for w in self._windows(s) if len(w) >= 2]
        if not sequences:
            log.warning("sasrec: no user has two or more interactions; the model stays untrained")
            return
        padded = torch.from_numpy(self._pad(sequences, self.max_len + 1))
        lengths = np.fromiter((min(len(s), self.max_len + 1) for s in sequences), dtype=np.int64,
                              count=len(sequences))
        valid_task = self._valid_task(dataset, valid) if valid is not None else None
        self.pretrain_history_ = []
        if self.pretrain != "none":
            self._pretrain(padded, lengths, rng, sampler, device)
        optimizer = torch.optim.Adam(net.parameters(), lr=self.lr, betas=(0.9, 0.98),
                                     weight_decay=self.weight_decay)
        steps_per_epoch = math.ceil(len(sequences) / self.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor(steps_per_epoch))
        log.info("sasrec: training on %d sequences, %d items, device %s", len(sequences),
                 dataset.n_items, device)

        def train_epoch() -> float:
            total, count = 0.0, 0
            for rows in self._batches(lengths, rng):
                width = int(lengths[rows].max())
                batch = padded[torch.from_numpy(rows), padded.shape[1] - width:].to(device)
                loss, n_targets = self._loss(net(batch[:, :-1]), batch[:, 1:], sampler)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += float(loss.detach()) * n_targets
                count += n_targets
            return total / max(count, 1)

        validate = (lambda: self._valid_ndcg(*valid_task)) if valid_task is not None else None
        outcome = EpochOutcome()
        self.history_, self.best_epoch_ = outcome.history, None
        train_epochs("sasrec", net, epochs=self.epochs, eval_every=self.eval_every, patience=self.patience,
                     train_epoch=train_epoch, validate=validate, outcome=outcome)
        self.best_epoch_ = outcome.best_epoch

    def _windows(self, sequence: np.ndarray) -> list[np.ndarray]:
        """The training windows of one user's sequence (see ``windows`` in the class docstring)."""
        width = self.max_len + 1
        if self.windows == "last" or len(sequence) <= width:
            return [sequence[-width:]]
        # from the newest back, consecutive windows share one item: each item is a target exactly once
        ends = range(len(sequence), 1, -(width - 1))
        return [sequence[max(0, end - width):end] for end in ends]

    def _lr_factor(self, steps_per_epoch: int) -> Callable[[int], float]:
        """Learning-rate multiplier by optimizer step: linear warm-up, then constant or cosine decay."""
        warmup = self.warmup_epochs * steps_per_epoch
        total = max(1, self.epochs * steps_per_epoch)
        floor = self.min_lr_ratio

        def factor(step: int) -> float:
            if warmup > 0 and step < warmup:
                return (step + 1) / warmup
            if self.lr_schedule == "constant":
                return 1.0
            progress = min(1.0, (step - warmup) / max(1.0, total - warmup))
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

        return factor

    def _pretrain(self, padded: torch.Tensor, lengths: np.ndarray, rng: np.random.Generator,
                  sampler: torch.Generator, device: torch.device) -> None:
        """PTUM pre-training (``recllm.models.ptum``) of the encoder on the same sequences, before next-item
        training; one batch order per epoch drawn from the training ``rng``."""
        assert self.net is not None
        net = self.net
        chunk = _CE_CHUNK.get(device.type, 4096)

        def batches() -> Iterator[torch.Tensor]:
            for rows in self._batches(lengths, rng):
                width = int(lengths[rows].max())
                yield padded[torch.from_numpy(rows), padded.shape[1] - width:].to(device)

        def cross_entropy(states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return _ChunkedCrossEntropy.apply(states, net.item_weights(), targets - 1, chunk)

        tasks = ptum.PTUM_TASKS if self.pretrain == "both" else (self.pretrain,)
        log.info("sasrec: PTUM pre-training (%s) for %d epochs", "+".join(tasks), self.pretrain_epochs)
        with training_progress("ptum", self.pretrain_epochs) as advance:
            self.pretrain_history_ = ptum.pretrain(
                net, batches, tasks=tasks, epochs=self.pretrain_epochs, lr=self.pretrain_lr or self.lr,
                mask_share=self.mask_share,
                next_k=self.next_k, hidden=self.hidden, max_len=self.max_len, generator=sampler,
                cross_entropy=cross_entropy, on_epoch=advance)

    def _batches(self, lengths: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        """One epoch's batches of sequence rows, in a random order drawn from ``rng``.

        Rows are shuffled, then sorted by length within windows of ``_BUCKET_BATCHES`` batches, so a
        batch holds sequences of similar length and little padding (about half the attention cost on
        MovieLens-1M) while batches still differ from epoch to epoch.
        """
        order = rng.permutation(len(lengths))
        window = self.batch_size * _BUCKET_BATCHES
        batches: list[np.ndarray] = []
        for begin in range(0, len(order), window):
            part = order[begin:begin + window]
            part = part[np.argsort(-lengths[part], kind="stable")]
            batches.extend(part[i:i + self.batch_size] for i in range(0, len(part), self.batch_size))
        return [batches[i] for i in rng.permutation(len(batches))]

    def _loss(self, hidden: torch.Tensor, targets: torch.Tensor,
              sampler: torch.Generator) -> tuple[torch.Tensor, int]:
        """Mean loss over the non-padding targets of a batch, and how many there were."""
        assert self.net is not None
        mask = targets != PAD
        states = hidden[mask]
        wanted = targets[mask]
        weights = self.net.item_table()
        if self.loss == "ce":
            chunk = _CE_CHUNK.get(states.device.type, 4096)
            loss = _ChunkedCrossEntropy.apply(states, self.net.item_weights(), wanted - 1, chunk)
            return loss, len(wanted)
        n_items = weights.shape[0] - 1
        negatives = torch.randint(1, n_items + 1, (self.n_negatives,), generator=sampler,
                                  device=targets.device)
        positive = (states * weights[wanted]).sum(-1, keepdim=True)
        negative = states @ weights[negatives].T
        negative = negative.masked_fill(negatives[None, :] == wanted[:, None], -math.inf)
        logits = torch.cat([positive, negative], dim=1)
        zeros = torch.zeros(len(wanted), dtype=torch.long, device=targets.device)
        return functional.cross_entropy(logits, zeros), len(wanted)

    def _valid_task(self, dataset: Dataset, valid: Dataset) -> tuple[list[np.ndarray], np.ndarray]:
        """Training histories and held-out targets of the validation rows."""
        if valid.n_items != dataset.n_items:
            raise ConfigError("sasrec: valid must share the item vocabulary of the training dataset")
        histories = [dataset.sequence(int(u)) for u in valid.users]
        return histories, np.asarray(valid.items, dtype=np.int64)

    def _valid_ndcg(self, histories: list[np.ndarray], targets: np.ndarray) -> float:
        """Mean NDCG@10 with full ranking, training items excluded, ties ranked pessimistically."""
        if len(targets) == 0:
            return 0.0
        ndcg = np.empty(len(targets))
        for begin in range(0, len(targets), _SCORE_BATCH):
            chunk = histories[begin:begin + _SCORE_BATCH]
            scores = self._score_histories(chunk)
            for row, hist in enumerate(chunk):
                scores[row, hist] = -np.inf
            ranks = pessimistic_ranks(scores, targets[begin:begin + _SCORE_BATCH])
            ndcg[begin:begin + len(chunk)] = ndcg_from_ranks(ranks, 10)
        return float(ndcg.mean())

    # ---- scoring ----------------------------------------------------------------------------------
    def score(self, users: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Next-item scores (len(users), n_items) from each history's newest position; users are unused."""
        self._require_fitted()
        if len(users) != len(histories):
            raise ConfigError(f"sasrec.score: {len(users)} users but {len(histories)} histories")
        with self._threads():
            out = np.empty((len(histories), self.n_items), dtype=np.float32)
            for begin in range(0, len(histories), _SCORE_BATCH):
                out[begin:begin + _SCORE_BATCH] = self._score_histories(histories[begin:begin + _SCORE_BATCH])
        return out

    def _score_histories(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        assert self.net is not None
        net = self.net
        was_training = net.training
        net.eval()
        device = next(net.parameters()).device
        with torch.no_grad():
            tokens = torch.from_numpy(self._pad(histories, self.max_len)).to(device)
            last = net(tokens)[:, -1]
            scores = (last @ net.item_weights().T).float().cpu().numpy()
        net.train(was_training)
        return scores

    # ---- persistence ------------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        if self.net is None:
            return {}
        return {f"net.{name}": tensor.detach().float().cpu().numpy()
                for name, tensor in self.net.state_dict().items()}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        assert self.item_vocab is not None
        self.device = loadable_device(self.device, "sasrec")
        state = {name.removeprefix("net."): torch.tensor(np.array(value)) for name, value in arrays.items()}
        self.net = self._build(len(self.item_vocab), state.get("text"))
        self.net.load_state_dict(state)
        self.net.eval()
