"""Self-supervised pre-training of a sequential encoder on user behaviour (PTUM, Wu et al. 2020).

Two tasks run on the training sequences before the ordinary next-item training starts:

- masked behaviour prediction (``mbp``): a share of the items in each sequence is replaced by a learned
  mask vector and predicted back from the encoder's state at that position, with attention over the
  whole sequence (both directions), as PTUM and BERT4Rec do;
- next-k behaviour prediction (``nbp``): the causal state at each position predicts each of the next
  ``k`` items (offset 1 directly, offsets 2..k through one linear map per offset), so the state has to
  summarise more than the very next step.

Only the encoder's weights carry over; the mask vector and offset maps are thrown away afterwards. The
same training data are used (no extra data), so any gain comes from the extra signal per sequence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import torch
from torch import nn

log = logging.getLogger(__name__)

PTUM_TASKS = ("mbp", "nbp")
PAD = 0


class SequenceEncoder(Protocol):
    """What pre-training needs of an encoder: hidden states with optional masking and bidirectional attention."""

    def __call__(self, tokens: torch.Tensor, *, masked: torch.Tensor | None = None,
                 mask_vector: torch.Tensor | None = None, causal: bool = True) -> torch.Tensor: ...

    def parameters(self) -> Iterable[nn.Parameter]: ...


CrossEntropy = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(states (N, H), target tokens (N,)) -> mean full-catalogue cross-entropy."""


class PretrainHeads(nn.Module):
    """The pre-training-only parameters: the mask vector and one linear map per offset 2..k."""

    def __init__(self, hidden: int, next_k: int) -> None:
        super().__init__()
        self.mask_vector = nn.Parameter(torch.randn(hidden) * 0.02)
        self.offsets = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(max(0, next_k - 1)))


def mask_positions(tokens: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """Boolean (B, T): about ``share`` of each row's real items, and at least its newest one when the draw
    picked none (so every row teaches something)."""
    real = tokens != PAD
    draw = torch.rand(tokens.shape, generator=generator, device=tokens.device) < share
    masked = draw & real
    empty = ~masked.any(dim=1) & real.any(dim=1)
    masked[empty, -1] = True  # left padding: the newest item is the last column
    return masked


def masked_behaviour_loss(encoder: SequenceEncoder, heads: PretrainHeads, tokens: torch.Tensor, share: float,
                          generator: torch.Generator, cross_entropy: CrossEntropy) -> tuple[torch.Tensor, int]:
    """Mean loss of predicting the masked items back, and how many were masked. ``tokens`` must fit the
    encoder's positions (the caller trims batches to its maximum length)."""
    masked = mask_positions(tokens, share, generator)
    hidden = encoder(tokens, masked=masked, mask_vector=heads.mask_vector, causal=False)
    return cross_entropy(hidden[masked], tokens[masked]), int(masked.sum())


def next_k_loss(encoder: SequenceEncoder, heads: PretrainHeads, tokens: torch.Tensor, next_k: int,
                cross_entropy: CrossEntropy) -> tuple[torch.Tensor, int]:
    """Mean over offsets 1..k of the loss of predicting the item that many steps ahead from the causal state."""
    hidden = encoder(tokens[:, :-1])
    width = hidden.shape[1]
    losses: list[torch.Tensor] = []
    count = 0
    for offset in range(1, min(next_k, width) + 1):
        states = hidden[:, :width - offset + 1]
        inputs = tokens[:, :width - offset + 1]
        targets = tokens[:, offset:width + 1]
        keep = (inputs != PAD) & (targets != PAD)
        if not keep.any():
            continue
        chosen = states[keep] if offset == 1 else heads.offsets[offset - 2](states[keep])
        losses.append(cross_entropy(chosen, targets[keep]))
        count += int(keep.sum())
    if not losses:
        return hidden.sum() * 0.0, 0
    return torch.stack(losses).mean(), count


def pretrain(encoder: nn.Module, batches: Callable[[], Iterable[torch.Tensor]], *, tasks: tuple[str, ...],
             epochs: int, lr: float, mask_share: float, next_k: int, hidden: int, max_len: int,
             generator: torch.Generator, cross_entropy: CrossEntropy,
             on_epoch: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run ``epochs`` of the chosen tasks over ``batches()`` (left-padded token batches up to ``max_len + 1``
    wide, as next-item training uses them); returns one record per epoch with the mean loss of each task."""
    unknown = [t for t in tasks if t not in PTUM_TASKS]
    if unknown or not tasks:
        raise ValueError(f"pre-training tasks must be some of {', '.join(PTUM_TASKS)}, got {tasks!r}")
    device = next(encoder.parameters()).device
    heads = PretrainHeads(hidden, next_k).to(device)
    optimizer = torch.optim.Adam([*encoder.parameters(), *heads.parameters()], lr=lr, betas=(0.9, 0.98))
    history: list[dict[str, Any]] = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        encoder.train()
        sums = dict.fromkeys(tasks, 0.0)
        counts = dict.fromkeys(tasks, 0)
        for tokens in batches():
            parts: list[torch.Tensor] = []
            if "mbp" in tasks:
                loss, n = masked_behaviour_loss(encoder, heads, tokens[:, -max_len:], mask_share, generator,
                                                cross_entropy)
                parts.append(loss)
                sums["mbp"] += float(loss.detach()) * n
                counts["mbp"] += n
            if "nbp" in tasks:
                loss, n = next_k_loss(encoder, heads, tokens, next_k, cross_entropy)
                parts.append(loss)
                sums["nbp"] += float(loss.detach()) * n
                counts["nbp"] += n
            optimizer.zero_grad(set_to_none=True)
            torch.stack(parts).sum().backward()
            optimizer.step()
        record: dict[str, Any] = {"pretrain_epoch": epoch, "seconds": time.perf_counter() - start}
        record.update({f"{task}_loss": sums[task] / max(counts[task], 1) for task in tasks})
        history.append(record)
        shown = ", ".join(f"{task} {record[f'{task}_loss']:.4f}" for task in tasks)
        log.info("ptum pre-training epoch %d: %s, %.1f s", epoch, shown, record["seconds"])
        if on_epoch is not None:
            on_epoch(f"pre-training {epoch}/{epochs}: {shown}")
    return history
