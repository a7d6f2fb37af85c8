"""Parsed-dataset cache: a DataBundle stored as Parquet + JSON so later loads skip text parsing."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from recllm.data.bundle import DataBundle
from recllm.data.catalog import Item, ItemCatalog
from recllm.data.dataset import Dataset
from recllm.data.vocabulary import Vocabulary

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: meta.json keeps the enforced rating range


def save_bundle(bundle: DataBundle, directory: Path) -> None:
    """Write atomically: into a temporary sibling folder, then rename into place."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    ds = bundle.dataset
    columns = {"user": ds.users, "item": ds.items}
    if ds.ratings is not None:
        columns["rating"] = ds.ratings
    if ds.timestamps is not None:
        columns["timestamp"] = ds.timestamps
    pd.DataFrame(columns).to_parquet(tmp / "interactions.parquet", index=False)
    if ds.user_attributes is not None:
        ds.user_attributes.to_parquet(tmp / "users.parquet")
    meta = {
        "cache_version": CACHE_VERSION,
        "name": ds.name,
        "rating_range": None if bundle.rating_range is None else list(bundle.rating_range),
        "user_ids": list(ds.user_vocab.ids),
        "item_ids": list(ds.item_vocab.ids),
        "catalog": [{"id": it.id, "title": it.title, "year": it.year, "genres": list(it.genres),
                     "extra": dict(it.extra)} for it in bundle.catalog],
    }
    (tmp / "meta.json").write_text(json.dumps(meta))
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)


def load_bundle(directory: Path) -> DataBundle | None:
    """The cached bundle, or None when absent, stale or unreadable (the caller re-parses)."""
    meta_path = directory / "meta.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("cache_version") != CACHE_VERSION:
            return None
        frame = pd.read_parquet(directory / "interactions.parquet")
        users_path = directory / "users.parquet"
        attrs = pd.read_parquet(users_path) if users_path.exists() else None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable dataset cache %s: %s", directory, exc)
        return None
    dataset = Dataset(
        users=frame["user"].to_numpy(),
        items=frame["item"].to_numpy(),
        user_vocab=Vocabulary(meta["user_ids"], kind="user"),
        item_vocab=Vocabulary(meta["item_ids"], kind="item"),
        ratings=frame["rating"].to_numpy() if "rating" in frame else None,
        timestamps=frame["timestamp"].to_numpy() if "timestamp" in frame else None,
        user_attributes=attrs,
        name=meta["name"],
    )
    catalog = ItemCatalog(Item(id=d["id"], title=d["title"], year=d["year"], genres=tuple(d["genres"]),
                               extra=d["extra"]) for d in meta["catalog"])
    bounds = meta.get("rating_range")
    return DataBundle(dataset, catalog, rating_range=None if bounds is None else (float(bounds[0]), float(bounds[1])))
