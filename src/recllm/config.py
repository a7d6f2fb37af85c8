"""Reading TOML configuration and turning pydantic validation errors into one readable line."""

from __future__ import annotations

import functools
import inspect
import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pydantic

from recllm.errors import ConfigError, RecllmError

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


def load_json_record(path: Path, *, version: int | None = None, what: str = "record",
                     error: type[RecllmError] = ConfigError) -> dict[str, Any]:
    """A JSON object that recllm wrote (a saved model's config, a training record): a missing or unreadable file,
    bad JSON, a non-object or another ``format_version`` is an ``error`` naming the file and what it should be."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: no {what} (file not found)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: unreadable {what} ({exc})") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: invalid JSON in the {what} ({exc})") from None
    if not isinstance(record, dict):
        raise error(f"{path}: the {what} should be a JSON object, found {type(record).__name__}")
    if version is not None and record.get("format_version") != version:
        raise error(f"{path}: unsupported format_version {record.get('format_version')!r} of the {what} "
                    f"(this recllm reads {version})")
    return record


def load_section(model: type[M], path: str | Path, section: str) -> M:
    """``model`` from the ``[section]`` table of a TOML file, or from the whole file when it has no such table."""
    raw = load_toml(path)
    return build(model, raw.get(section, raw), where=str(path))


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


@functools.cache
def signature_model(target: Callable[..., Any], skip: frozenset[str] = frozenset()) -> type[pydantic.BaseModel]:
    """A pydantic model of ``target``'s keyword arguments (a class: its ``__init__``), annotations and defaults
    included, unknown keys forbidden: the one place a component's options are typed. ``skip`` names the
    arguments that are objects, not configuration (``llm``, ``catalog``, ...)."""
    function = target.__init__ if inspect.isclass(target) else target
    fields: dict[str, Any] = {}
    for param in inspect.signature(function, eval_str=True).parameters.values():
        if param.name in ("self", *skip) or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = param.annotation if param.annotation is not inspect.Parameter.empty else Any
        default = param.default if param.default is not inspect.Parameter.empty else ...
        fields[param.name] = (annotation, default)
    name = getattr(target, "__name__", "Component")
    return pydantic.create_model(f"{name}Config", __config__=pydantic.ConfigDict(extra="forbid"), **fields)


F = TypeVar("F", bound=Callable[..., Any])


def checked(*, skip: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Decorator for a component's ``__init__``: its keyword arguments are validated against the pydantic model
    of its own signature (types, ``Field`` bounds in ``Annotated`` hints, ``Literal`` choices) before the body
    runs, and arrive converted (``"false"`` is False). A bad value is a ConfigError naming the component and the
    field, so the bounds live in the signature and nowhere else. ``skip`` names object arguments (an LLM, a
    catalog) that are not configuration."""

    def decorate(init: F) -> F:
        signature = inspect.signature(init)

        @functools.wraps(init)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(self, *args, **kwargs)
            values = {k: v for k, v in bound.arguments.items() if k != "self" and k not in skip}
            name = getattr(type(self), "name", None)
            where = name if isinstance(name, str) else type(self).__name__
            config = build(signature_model(init, frozenset(skip)), values, where=where)
            bound.arguments.update({key: getattr(config, key) for key in values})
            return init(*bound.args, **bound.kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
