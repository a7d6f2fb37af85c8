"""One registry mechanism for every pluggable component: models, re-rankers, LLM backends and embedders.

A ``Registry`` maps names to components. Built-in components are registered as ``"module:attribute"``
strings and imported on first use (so listing names never loads torch); third-party packages add theirs
through the Python entry-point group the registry reads (``recllm.models``, ``recllm.rerankers``,
``recllm.llm_backends``, ``recllm.embedders``). Options are validated against the component's pydantic
config (``recllm.config.signature_model`` of its constructor): a misspelt key, a wrong type or a value
out of bounds is a ``recllm.errors.ConfigError`` naming the component.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar, overload

import pydantic

from recllm.config import build, signature_model
from recllm.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Name -> component (a class or factory), with lazy built-ins, aliases and entry-point plugins.

    ``objects`` names constructor arguments that are objects handed over by the caller (an LLM, a catalog),
    not configuration: they are left out of the options' config model.
    """

    def __init__(self, kind: str, group: str, *, objects: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.group = group
        self.objects = frozenset(objects)
        self._entries: dict[str, T | str] = {}
        self._aliases: dict[str, str] = {}
        self._plugins_loaded = False

    # ---- registering -------------------------------------------------------------------------------------
    @overload
    def register(self, name: str, target: None = None, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, target: T | str, *, aliases: tuple[str, ...] = ()) -> T | str: ...
    def register(self, name: str, target: T | str | None = None, *,
                 aliases: tuple[str, ...] = ()) -> Callable[[T], T] | T | str:
        """Register ``target`` (or a ``"module:attribute"`` string, imported on first use) under ``name``;
        without ``target``, a decorator. Registering a name again replaces the entry."""
        key = self._key(name)

        def add(component: Any) -> Any:
            self._entries[key] = component
            for alias in aliases:
                self._aliases[self._key(alias)] = key
            return component

        return add if target is None else add(target)

    def unregister(self, name: str) -> None:
        """Remove ``name`` and its aliases (a test that registered a component cleans up with this)."""
        key = self._key(name)
        self._entries.pop(key, None)
        for alias in [a for a, target in self._aliases.items() if target == key]:
            del self._aliases[alias]

    # ---- looking up -------------------------------------------------------------------------------------
    def resolve(self, name: str) -> str:
        """The registered key for ``name`` (case and aliases folded); a ConfigError listing the known names."""
        key = self._key(name)
        key = self._aliases.get(key, key)
        if key not in self._entries:
            self._load_plugins()
            key = self._aliases.get(key, key)
        if key not in self._entries:
            raise ConfigError(f"unknown {self.kind} '{name}'; known: {', '.join(self.names())}")
        return key

    def get_component(self, name: str) -> T:
        key = self.resolve(name)
        entry = self._entries[key]
        if isinstance(entry, str):
            entry = self._import(key, entry)
            self._entries[key] = entry
        return entry

    def names(self) -> list[str]:
        """Every registered name (built-ins first, then plugins), without aliases."""
        self._load_plugins()
        return list(self._entries)

    def options_model(self, name: str) -> type[pydantic.BaseModel]:
        """The pydantic config of ``name``'s options: its constructor's keywords with their types, bounds
        and defaults; unknown keys are errors."""
        component = self.get_component(name)
        custom = getattr(component, "config_model", None)
        if callable(custom):
            return custom()
        return signature_model(component, self.objects)

    def validate(self, name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """``options`` checked and converted (``"false"`` from a command line is False); only the keys given.
        Values are read off the validated model, not dumped: a dump would turn an object inside an option
        (a ``Template`` in ``prompt_options``) into a plain dict."""
        key = self.resolve(name)
        config = build(self.options_model(key), dict(options or {}), where=f"{self.kind} '{key}'")
        return {field: getattr(config, field) for field in config.model_fields_set}

    def create(self, name: str, *objects: Any, options: Mapping[str, Any] | None = None, **passed: Any) -> Any:
        """``component(*objects, **validated options, **passed)``: ``passed`` are object arguments (an LLM,
        a catalog, a builder) that bypass validation."""
        component = self.get_component(name)
        return component(*objects, **self.validate(name, options), **passed)  # type: ignore[operator]

    # ---- Mapping -----------------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> T:
        try:
            return self.get_component(name)
        except ConfigError:
            raise KeyError(name) from None

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._key(name)
        if key in self._entries or key in self._aliases:
            return True
        self._load_plugins()
        return key in self._entries or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    # ---- internals ---------------------------------------------------------------------------------------
    @staticmethod
    def _key(name: str) -> str:
        return name.strip().lower()

    def _import(self, key: str, path: str) -> T:
        module, _, attribute = path.partition(":")
        try:
            return getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{self.kind} '{key}' could not be loaded from {path}: {exc}") from exc

    def _load_plugins(self) -> None:
        """Read the entry-point group once; a plugin never replaces a built-in of the same name."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in entry_points(group=self.group):
            key = self._key(point.name)
            if key in self._entries:
                log.warning("%s plugin '%s' (%s) ignored: the name is taken", self.kind, point.name, point.value)
                continue
            self._entries[key] = point.value


def parse_spec(spec: str, *, kind: str = "spec") -> tuple[str, str | None, dict[str, Any]]:
    """``"backend[:target][,key=value...]"`` -> (backend, target, options); values are read as JSON when they
    parse (``can_score=true``, ``max_tokens=64``), else kept as strings. ``"openai:http://h:8001/v1,model=x"``
    gives ``("openai", "http://h:8001/v1", {"model": "x"})``."""
    head, *pairs = spec.strip().split(",")
    backend, sep, target = head.partition(":")
    options: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"{kind} '{spec}': expected key=value after a comma, got '{pair}'")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value.strip()
    return backend.strip().lower(), (target.strip() or None) if sep else None, options
