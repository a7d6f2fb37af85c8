"""Reading TOML configuration and turning pydantic validation errors into one readable line."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

import pydantic

from recllm.errors import ConfigError

M = TypeVar("M", bound=pydantic.BaseModel)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing file or bad syntax is a ConfigError naming the file."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None


def validation_message(exc: pydantic.ValidationError) -> str:
    """Every problem as ``dotted.location: message (got value)``, joined by semicolons."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        got = f" (got {err['input']!r})" if "input" in err and err["type"] != "missing" else ""
        parts.append(f"{loc}: {err['msg']}{got}")
    return "; ".join(parts)


def build(model: type[M], values: dict[str, Any], *, where: str) -> M:
    """Validate ``values`` into ``model``; errors are ConfigError prefixed by ``where``."""
    try:
        return model(**values)
    except pydantic.ValidationError as exc:
        raise ConfigError(f"{where}: {validation_message(exc)}") from None
