"""Pinned offline artifacts: fetch a package with pip, verify its data files by sha256, unpack once.

Only data files inside the packages are read; their code is never imported or run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from recllm.errors import ArtifactError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PinnedFile:
    member: str  # path inside the wheel
    sha256: str


@dataclass(frozen=True)
class PinnedPackage:
    name: str
    version: str
    files: tuple[PinnedFile, ...]

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class PinnedSplitFile:
    """One file shipped in parts, one part per package (registries cap a wheel's size): each part is pinned by
    its own sha256, the assembled file (parts concatenated in order) by ``sha256``."""

    name: str
    sha256: str
    parts: tuple[PinnedPackage, ...]

    def __post_init__(self) -> None:
        if not self.parts or any(len(part.files) != 1 for part in self.parts):
            raise ValueError(f"{self.name}: every part package must pin exactly one file")

    @property
    def requirements(self) -> str:
        return ", ".join(part.requirement for part in self.parts)


def recllm_home() -> Path:
    """Cache root: ``$RECLLM_HOME`` or ``~/.cache/recllm``."""
    return Path(os.environ.get("RECLLM_HOME") or Path.home() / ".cache" / "recllm").expanduser()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_dir(package: PinnedPackage) -> Path:
    return recllm_home() / "artifacts" / f"{package.name}-{package.version}"


def fetch(package: PinnedPackage) -> Path:
    """Directory holding the package's pinned files, fetching and verifying them the first time.

    A marker file records each verified file's size and mtime; later calls trust unchanged files without
    hashing them again, and re-verify (then re-fetch) a file that was modified or removed.
    """
    target = artifact_dir(package)
    marker = target / ".verified.json"
    if _marker_valid(target, marker, package):
        return target
    with tempfile.TemporaryDirectory(prefix="recllm-fetch-") as tmp:
        wheel = _download(package, Path(tmp))
        staged = Path(tmp) / "unpacked"
        _extract_verified(wheel, package, staged)
        target.mkdir(parents=True, exist_ok=True)
        for pinned in package.files:
            dest = target / pinned.member
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(staged / pinned.member, dest)
    _write_marker(target, marker, package)
    log.info("fetched and verified %s into %s", package.requirement, target)
    return target


def assemble(split: PinnedSplitFile) -> Path:
    """The assembled file of ``split`` under ``$RECLLM_HOME/artifacts``, fetching and verifying every part and the
    whole the first time; the parts are removed once the whole is verified (it is all that is read later)."""
    target_dir = recllm_home() / "artifacts" / f"{Path(split.name).stem}-{split.sha256[:16]}"
    target = target_dir / split.name
    whole = PinnedPackage(split.name, split.sha256[:16], (PinnedFile(split.name, split.sha256),))
    marker = target_dir / ".verified.json"
    if _marker_valid(target_dir, marker, whole):
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target_dir, prefix=f".{split.name}-", delete=False) as handle:
        staged = Path(handle.name)
        try:
            for part in split.parts:
                folder = fetch(part)
                with open(folder / part.files[0].member, "rb") as src:
                    shutil.copyfileobj(src, handle, 1 << 20)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
    try:
        verify_checksum(staged, split.sha256, origin=f"{split.name} assembled from {split.requirements}")
        staged.chmod(0o644)
        staged.replace(target)
    finally:
        staged.unlink(missing_ok=True)
    _write_marker(target_dir, marker, whole)
    for part in split.parts:
        shutil.rmtree(artifact_dir(part), ignore_errors=True)
    log.info("assembled and verified %s from %d parts", target, len(split.parts))
    return target


def _marker_valid(target: Path, marker: Path, package: PinnedPackage) -> bool:
    if not marker.exists():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    for pinned in package.files:
        path = target / pinned.member
        entry = recorded.get(pinned.member)
        if not path.exists() or not entry or entry.get("sha256") != pinned.sha256:
            return False
        stat = path.stat()
        changed = entry.get("size") != stat.st_size or entry.get("mtime_ns") != stat.st_mtime_ns
        if changed and sha256_of(path) != pinned.sha256:
            return False
    return True


def _write_marker(target: Path, marker: Path, package: PinnedPackage) -> None:
    record = {}
    for pinned in package.files:
        stat = (target / pinned.member).stat()
        record[pinned.member] = {"sha256": pinned.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    marker.write_text(json.dumps(record, indent=1))


def _download(package: PinnedPackage, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--quiet", "--dest", str(dest), package.requirement]
    log.info("downloading %s with pip", package.requirement)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ArtifactError(f"could not run pip to fetch {package.requirement}: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ArtifactError(f"pip could not fetch {package.requirement}: {tail[0]}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise ArtifactError(f"pip fetched {package.requirement} but no wheel was found in {dest}")
    return wheels[0]


def _extract_verified(wheel: Path, package: PinnedPackage, staged: Path) -> None:
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise ArtifactError(f"{wheel.name} is not a valid wheel: {exc}") from exc
    with archive:
        names = set(archive.namelist())
        for pinned in package.files:
            if pinned.member not in names:
                raise ArtifactError(f"{wheel.name} has no file {pinned.member}")
            out = staged / pinned.member
            out.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(pinned.member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            verify_checksum(out, pinned.sha256, origin=f"{package.requirement}:{pinned.member}")


def verify_checksum(path: Path, expected: str, *, origin: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ArtifactError(f"checksum mismatch for {origin}: expected sha256 {expected}, got {actual}")
