"""The layer contract in pyproject.toml holds: no module imports a layer above its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_layer_contract_is_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "recllm layers KEPT" in proc.stdout


def test_importing_recllm_loads_neither_torch_nor_the_service() -> None:
    """The root package offers the main entry points lazily: importing it stays light."""
    code = ("import sys, recllm; assert 'torch' not in sys.modules and 'fastapi' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith(('torch', 'fastapi'))); "
            "assert callable(recllm.create_model) and recllm.Pipeline.__name__ == 'Pipeline'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
