"""Resumable benchmark rows: a row's JSON state is checked against the lists it was measured on, continued where
it stopped and saved as it goes, so a run longer than a session is never lost."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def resume(path: Path, keys: dict[str, list[str]], fresh: dict[str, Any]) -> dict[str, Any] | None:
    """The row's state: the saved one when ``path`` holds it (None if it is finished), else ``fresh`` with empty
    per-part lists. Stops the script when the saved state was measured on other lists than ``keys``."""
    if not path.exists():
        return {**fresh, "keys": keys, "lists": {part: [] for part in keys}}
    state: dict[str, Any] = json.loads(path.read_text())
    if state["keys"] != keys:
        raise SystemExit(f"{path} was measured on other lists (users, candidates or retriever changed): move it "
                         "away")
    return None if state.get("finished") else state


def save(path: Path, state: dict[str, Any], *, finished: bool = False) -> None:
    """Write the row's state (with the finishing date when ``finished``)."""
    if finished:
        state.update(finished=True, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(state))
    partial.replace(path)  # atomic: a run stopped mid-write keeps the last whole state
