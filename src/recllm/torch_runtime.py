"""Where and how torch runs: device choice, a scoped CPU thread count, and a GPU-saved model served on a CPU.

Shared by the torch models (SASRec, TIGER), the hf backend and LoRA tuning, which all take the same
``device`` and ``num_threads`` options."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from recllm.errors import ConfigError

log = logging.getLogger(__name__)


def pick_device(device: str) -> torch.device:
    """``"auto"``: the first CUDA GPU if there is one, else the CPU; otherwise the named torch device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown torch device '{device}'") from exc


def loadable_device(saved: str, owner: str) -> str:
    """The device a model saved with ``saved`` loads on here: a CUDA device falls back to the CPU on a machine
    without CUDA (weights are stored as plain arrays, so a model trained on a GPU serves anywhere)."""
    if saved.startswith("cuda") and not torch.cuda.is_available():
        log.info("%s: saved with device %r, loading on cpu (no CUDA here)", owner, saved)
        return "cpu"
    return saved


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the body with ``count`` torch CPU threads (None or 0 keeps torch's setting), restoring it after,
    so that one model's setting does not leak into the rest of the process."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
