"""Reading the JSON records recllm writes: every broken file is a clear error naming it, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from recllm.config import load_json_record
from recllm.errors import ConfigError, RecllmError
from recllm.models.base import Recommender
from recllm.train.semantic_ids import SemanticIds


def test_a_good_record_is_returned(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"format_version": 2, "x": [1]}')
    assert load_json_record(path, version=2) == {"format_version": 2, "x": [1]}


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "invalid JSON in the training record"),
    ("[1, 2]", "should be a JSON object, found list"),
    ('{"format_version": 9}', "unsupported format_version 9 of the training record \\(this recllm reads 2\\)"),
    ("\udcff".encode("utf-8", "surrogateescape"), "unreadable training record"),
])
def test_each_broken_record_names_the_file_and_the_fault(tmp_path: Path, text: str | bytes, message: str) -> None:
    path = tmp_path / "r.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(ConfigError, match=rf"r\.json: .*{message}"):
        load_json_record(path, version=2, what="training record")


def test_a_missing_record_and_a_chosen_error_class(tmp_path: Path) -> None:
    with pytest.raises(RecllmError, match=r"gone\.json: no model config"):
        load_json_record(tmp_path / "gone.json", what="model config", error=RecllmError)


def test_saved_models_and_semantic_ids_with_a_broken_record_fail_clearly(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(RecllmError, match=r"config\.json: invalid JSON in the model config"):
        Recommender.load(tmp_path)
    ids = tmp_path / "ids"
    ids.mkdir()
    (ids / "semantic_ids.json").write_text('{"format_version": 0}')
    (ids / "semantic_ids.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="unsupported format_version 0 of the semantic-id record"):
        SemanticIds.load(ids)
