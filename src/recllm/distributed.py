"""Ray, for work beyond one process: connect to a cluster or start a local Ray on loopback, and map a function
over shards of work as Ray tasks. Optional: ``pip install 'recllm[ray]'``; without ``--ray`` nothing here
imports Ray and the same shards run one after another in this process, giving identical results.

``--ray`` values: ``local`` starts a Ray for this run on 127.0.0.1 with ``workers`` CPUs; ``auto`` joins the
cluster that ``RAY_ADDRESS`` or a running ``ray start`` names, else starts a local one; anything else is a
cluster address (``HOST:PORT`` or ``ray://HOST:PORT``).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any, TypeVar

from recllm.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")
_ADDRESS = re.compile(r"^(ray://)?[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")


def require_ray() -> ModuleType:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--ray needs Ray: pip install 'recllm[ray]'") from exc
    return ray


def check_address(address: str) -> str:
    """``address`` if it is ``local``, ``auto`` or a cluster address; a ConfigError naming the forms otherwise."""
    if address in ("local", "auto") or _ADDRESS.match(address):
        return address
    raise ConfigError(f"--ray must be local, auto or a cluster address (HOST:PORT or ray://HOST:PORT), got "
                      f"{address!r}")


@contextmanager
def ray_session(address: str, *, workers: int) -> Iterator[ModuleType]:
    """Ray connected as ``address`` says (see the module docstring) for the block; a Ray this call started is
    shut down at its end, one that was running already is left alone."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    check_address(address)
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    quiet: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address == "auto":
        try:
            ray.init(address="auto", **quiet)
        except ConnectionError:
            log.info("no running Ray cluster found; starting a local one on loopback with %d CPUs", workers)
            _loopback_only(ray)
            ray.init(num_cpus=workers, **quiet)
    elif address == "local":
        _loopback_only(ray)
        ray.init(num_cpus=workers, **quiet)
    else:
        ray.init(address=address, **quiet)
    try:
        yield ray
    finally:
        ray.shutdown()


def _loopback_only(ray: ModuleType) -> None:
    """Make the Ray started next a single-machine one on 127.0.0.1: on Linux Ray otherwise binds its node to the
    machine's network address. Ray reads this switch from the environment when it is imported (its processes
    inherit the variable); for a Ray imported already, its constant is set too."""
    os.environ[_SINGLE_MACHINE] = "0"
    ray._private.ray_constants.ENABLE_RAY_CLUSTER = False


_SINGLE_MACHINE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch between a cluster-reachable node address and loopback (named for the platforms where loopback
is its default)."""


def contiguous_shards(items: Sequence[T], shards: int) -> list[Sequence[T]]:
    """``items`` in at most ``shards`` contiguous, non-empty parts of near-equal size, in order."""
    if shards < 1:
        raise ConfigError(f"shards must be at least 1, got {shards}")
    count = min(shards, max(1, len(items)))
    bounds = [round(i * len(items) / count) for i in range(count + 1)]
    return [items[lo:hi] for lo, hi in itertools.pairwise(bounds) if hi > lo]


def map_shards(function: Callable[..., T], shards: Sequence[Any], *, shared: Sequence[Any] = (),
               ray: ModuleType | None = None) -> list[T]:
    """``function(shard, *shared)`` for every shard, results in shard order: here one after another without
    ``ray``, else as one Ray task each (one CPU a task; ``shared`` objects go to the object store once)."""
    if ray is None:
        return [function(shard, *shared) for shard in shards]
    refs = [ray.put(value) for value in shared]
    task = ray.remote(num_cpus=1)(function)
    return list(ray.get([task.remote(shard, *refs) for shard in shards]))
