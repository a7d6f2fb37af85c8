"""How a language model knows the items: the catalog renamed to the ids an adapter was tuned with.

An adapter tuned with random or semantic item ids (``recllm train lm --naming random``) keeps an item-name map
beside its weights; at inference every prompt must name items exactly as in training. This is runtime code
(re-rankers, explanations, the service), so it lives here rather than with the trainers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from recllm.config import load_json_record
from recllm.data.catalog import Item, ItemCatalog
from recllm.errors import ConfigError
from recllm.llm.resolve import TRAIN_MARKER
from recllm.registry import parse_spec

NAMES_FILE = "item-names.json"
"""Beside a tuned adapter: item id -> the name it was trained with (id namings only)."""

def named_catalog(catalog: ItemCatalog, names: Mapping[str, str] | None, *, facts: bool = False) -> ItemCatalog:
    """The catalog whose titles are ``names`` (None: ``catalog`` itself); ``facts`` keeps year and genres."""
    if names is None:
        return catalog
    seen: dict[str, str] = {}
    for item, name in names.items():
        if name in seen:
            raise ConfigError(f"items '{seen[name]}' and '{item}' have the same name {name!r}: names must be unique")
        seen[name] = item
    return ItemCatalog(Item(id=i.id, title=names[i.id], year=i.year if facts else None,
                            genres=i.genres if facts else ()) for i in catalog if i.id in names)


def tuned_catalog(out_dir: str | Path, catalog: ItemCatalog) -> ItemCatalog:
    """The catalog to use with a model tuned in ``out_dir``: ``catalog`` itself for title naming, else the
    items renamed to the ids the model was trained on (read from ``item-names.json``)."""
    out = Path(out_dir)
    marker = out / TRAIN_MARKER
    if not marker.exists():
        raise ConfigError(f"{out} holds no training record ({TRAIN_MARKER})")
    names_path = out / NAMES_FILE
    if not names_path.exists():
        return catalog
    record = load_json_record(marker, what="training record")
    names = load_json_record(names_path, what="item-name map")
    facts = bool(record.get("instructions", {}).get("config", {}).get("id_facts", False))
    return named_catalog(catalog, names, facts=facts)


def catalog_for_llm(spec: str, catalog: ItemCatalog) -> ItemCatalog:
    """``catalog`` as the LLM named by ``spec`` knows its items: renamed when ``spec`` is ``hf:FOLDER`` of an
    adapter tuned with random or semantic ids, unchanged otherwise (so prompts name items as in training)."""
    backend, target, _ = parse_spec(spec, kind="LLM spec")
    if backend != "hf" or target is None:
        return catalog
    folder = Path(target)  # options after the folder (``hf:FOLDER,dtype=fast``) are not part of it
    return tuned_catalog(folder, catalog) if (folder / NAMES_FILE).is_file() else catalog
