"""The epoch loop shared by the torch recommenders (SASRec, TIGER): train an epoch, evaluate validation
NDCG@10 every few epochs, stop after ``patience`` evaluations without improvement, restore the best weights."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from recllm.progress import training_progress

log = logging.getLogger(__name__)


@dataclass
class EpochOutcome:
    """What the loop leaves behind: one record per epoch (epoch, loss, valid_ndcg or None, seconds) and the
    epoch whose weights were restored (None when nothing was evaluated)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None


def train_epochs(name: str, net: nn.Module, *, epochs: int, eval_every: int, patience: int,
                 train_epoch: Callable[[], float], validate: Callable[[], float] | None,
                 outcome: EpochOutcome | None = None) -> EpochOutcome:
    """Run up to ``epochs`` calls of ``train_epoch`` (which returns the epoch's mean loss) on ``net``.

    ``validate`` (None: no early stopping) runs every ``eval_every`` epochs and after the last; ``patience``
    evaluations without a better NDCG stop training, and the best weights are loaded back into ``net``.
    ``outcome`` is filled as the loop goes, so a caller sees the epochs done even if training is interrupted.
    """
    outcome = outcome if outcome is not None else EpochOutcome()
    best_ndcg, best_state, stale = -math.inf, None, 0
    with training_progress(name, epochs) as advance:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            net.train()
            record: dict[str, Any] = {"epoch": epoch, "loss": train_epoch(), "valid_ndcg": None}
            evaluate = validate is not None and (epoch % eval_every == 0 or epoch == epochs)
            if validate is not None and evaluate:
                record["valid_ndcg"] = validate()
            record["seconds"] = time.perf_counter() - start
            outcome.history.append(record)
            shown = "-" if record["valid_ndcg"] is None else f"{record['valid_ndcg']:.4f}"
            log.info("%s epoch %d: loss %.4f, valid NDCG@10 %s, %.1f s", name, epoch, record["loss"], shown,
                     record["seconds"])
            advance(f"epoch {epoch}: loss {record['loss']:.4f}, NDCG@10 {shown}")
            if not evaluate:
                continue
            if record["valid_ndcg"] > best_ndcg:
                best_ndcg, stale, outcome.best_epoch = record["valid_ndcg"], 0, epoch
                best_state = copy.deepcopy(net.state_dict())
                continue
            stale += 1
            if stale >= patience:
                log.info("%s: no improvement in %d evaluations; stopping after epoch %d", name, stale, epoch)
                break
    if best_state is not None:
        net.load_state_dict(best_state)
        log.info("%s: restored weights of epoch %s (valid NDCG@10 %.4f)", name, outcome.best_epoch, best_ndcg)
    return outcome
