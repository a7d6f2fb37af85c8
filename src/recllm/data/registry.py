"""Dataset names the CLI and library accept, with a parsed cache for the pinned MovieLens sets.

Names: ``movielens-100k``, ``movielens-1m`` (pinned, fetched once); ``grouplens-100k:DIR`` and
``grouplens-1m:DIR`` (original archives unpacked in DIR); ``files:CONFIG.toml`` (generic files).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from recllm.artifacts import PinnedPackage, recllm_home
from recllm.data.bundle import DataBundle
from recllm.data.cache import load_bundle, save_bundle
from recllm.data.files import load_files_toml
from recllm.data.movielens import (
    ML1M_PACKAGE,
    ML100K_PACKAGE,
    load_grouplens_1m,
    load_grouplens_100k,
    load_pinned_ml1m,
    load_pinned_ml100k,
)
from recllm.errors import DataError
from recllm.registry import Registry

log = logging.getLogger(__name__)

PINNED: dict[str, tuple[PinnedPackage, Callable[[], DataBundle]]] = {
    "movielens-100k": (ML100K_PACKAGE, load_pinned_ml100k),
    "movielens-1m": (ML1M_PACKAGE, load_pinned_ml1m),
}
PATH_LOADERS: Registry[Callable[[Path], DataBundle]] = Registry("dataset loader", "recllm.datasets")
"""Loaders of ``KIND:PATH`` datasets by kind; a plugin adds its own kind through the ``recllm.datasets``
entry-point group (a callable taking the path and returning a DataBundle)."""
PATH_LOADERS.register("grouplens-100k", load_grouplens_100k)
PATH_LOADERS.register("grouplens-1m", load_grouplens_1m)
PATH_LOADERS.register("files", load_files_toml)


def dataset_names() -> list[str]:
    return [*PINNED, *(f"{k}:PATH" for k in PATH_LOADERS)]


def load_dataset(name: str, *, use_cache: bool = True) -> DataBundle:
    """Load a dataset by name (see module docstring); pinned sets are parsed once and cached."""
    if name in PINNED:
        package, loader = PINNED[name]
        cache_dir = recllm_home() / "datasets" / f"{name}-{package.name}-{package.version}"
        if use_cache:
            cached = load_bundle(cache_dir)
            if cached is not None:
                return cached
        bundle = loader()
        if use_cache:
            save_bundle(bundle, cache_dir)
            log.info("cached parsed %s in %s", name, cache_dir)
        return bundle
    kind, sep, path = name.partition(":")
    if sep and kind in PATH_LOADERS:
        return PATH_LOADERS.get_component(kind)(Path(path))
    raise DataError(f"unknown dataset '{name}'; known: {', '.join(dataset_names())}")
