"""Generic interactions + items from CSV/TSV, Parquet or JSON Lines, described by a TOML or dict config."""

from __future__ import annotations

from pathlib import Path

import pydantic

from recllm.config import build, load_toml
from recllm.data.bundle import DataBundle
from recllm.data.catalog import Item, ItemCatalog
from recllm.data.tables import read_table
from recllm.data.validation import (
    DuplicatePolicy,
    InteractionColumns,
    ItemColumns,
    build_catalog,
    build_dataset,
)


class InteractionSource(InteractionColumns):
    path: Path
    format: str | None = None
    separator: str | None = None


class ItemSource(ItemColumns):
    path: Path
    format: str | None = None
    separator: str | None = None


class FileDatasetConfig(pydantic.BaseModel):
    """Where the files are and which columns mean what; relative paths are relative to the config file."""

    model_config = pydantic.ConfigDict(extra="forbid")
    name: str = "files"
    interactions: InteractionSource
    items: ItemSource | None = None
    strict: bool = False
    duplicates: DuplicatePolicy = "keep-last"


def load_files(config: FileDatasetConfig | dict, *, base: Path | None = None) -> DataBundle:
    """Load interactions (and optionally items) named by ``config``.

    Without an items file the catalog holds one entry per interacted item, titled by its id.
    """
    if isinstance(config, dict):
        config = build(FileDatasetConfig, config, where="dataset config")
    base = base or Path.cwd()
    catalog = None
    if config.items is not None:
        src = config.items
        table = read_table(_resolve(src.path, base), src.format, sep=src.separator)
        catalog = build_catalog(table, ItemColumns(**src.model_dump(include=set(ItemColumns.model_fields))))
    src = config.interactions
    table = read_table(_resolve(src.path, base), src.format, sep=src.separator)
    dataset = build_dataset(table, InteractionColumns(**src.model_dump(include=set(InteractionColumns.model_fields))),
                            catalog=catalog, strict=config.strict, duplicates=config.duplicates, name=config.name)
    if catalog is None:
        catalog = ItemCatalog(Item(id=i, title=i) for i in dataset.item_vocab.ids)
    return DataBundle(dataset, catalog)


def load_files_toml(path: str | Path) -> DataBundle:
    path = Path(path)
    config = build(FileDatasetConfig, load_toml(path), where=str(path))
    return load_files(config, base=path.parent)


def _resolve(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else base / path
