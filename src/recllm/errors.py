"""Exception types shared by every layer; each names what is wrong and where."""

from __future__ import annotations

from pathlib import Path


class RecllmError(Exception):
    """Base class of every error recllm raises on purpose (the CLI prints these as one line)."""


class ConfigError(RecllmError):
    """A configuration value or key is invalid."""


class ArtifactError(RecllmError):
    """A pinned artifact could not be fetched, or its checksum does not match."""


class DataError(RecllmError):
    """Bad input data; carries the file, line (1-based, as an editor shows it) and field when known."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.reason = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.path is not None:
            where.append(self.path if self.line is None else f"{self.path}:{self.line}")
        elif self.line is not None:
            where.append(f"line {self.line}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason


class NotFittedError(RecllmError):
    """A model was used before `fit` or `load`."""


class UnknownIdError(RecllmError, KeyError):
    """An external user or item id is not in the vocabulary."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown id"
