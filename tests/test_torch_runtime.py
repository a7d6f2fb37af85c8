"""Device choice, scoped thread counts and the CPU fallback for models saved on a GPU."""

from __future__ import annotations

import pytest
import torch

from recllm.errors import ConfigError
from recllm.torch_runtime import loadable_device, pick_device, torch_threads


def test_pick_device_auto_and_named() -> None:
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == torch.device("cpu")


def test_pick_device_names_the_bad_device() -> None:
    with pytest.raises(ConfigError, match="unknown torch device 'tpu9'"):
        pick_device("tpu9")


def test_torch_threads_restores_the_setting_even_after_an_error() -> None:
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with torch_threads(target):
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(target):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with torch_threads(0), torch_threads(None):
        assert torch.get_num_threads() == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback is for machines without CUDA")
def test_a_model_saved_on_a_gpu_loads_on_the_cpu() -> None:
    assert loadable_device("cuda:0", "sasrec") == "cpu"
    assert loadable_device("cpu", "sasrec") == "cpu"
    assert loadable_device("auto", "sasrec") == "auto"
