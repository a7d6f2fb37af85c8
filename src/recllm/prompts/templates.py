"""Prompt templates as data: one TOML file per task and variant, validated once when loaded.

A template file has a ``[template]`` table (task, variant, answer reserve), a ``[parts]`` table of
``str.format`` strings with named fields, and an optional ``[output_formats]`` table of alternative
output-format indicators (e.g. ``json``). Built-in templates live in ``recllm/prompts/templates/`` as
``{task}.{variant}.toml``; a user file, or a folder holding files of the same names, overrides them.
"""

from __future__ import annotations

import logging
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from recllm.errors import ConfigError

log = logging.getLogger(__name__)

TASKS = ("rank-likelihood", "rank-verbalizer", "rank-listwise", "rating", "explain", "next-item")
VARIANTS = ("zero-shot", "few-shot", "chain-of-thought")
RANKING_TASKS = frozenset({"rank-likelihood", "rank-verbalizer", "rank-listwise"})
TARGET_TASKS = frozenset({"rating", "explain"})

# Fields every part may use.
COMMON_FIELDS = frozenset({
    "noun", "nouns", "n_history", "n_candidates", "k", "first_label", "last_label", "labels",
    "scale_min", "scale_max", "target_title", "order",
})
ITEM_FIELDS = frozenset({"number", "id", "title", "facts"})
# Extra fields per part, on top of COMMON_FIELDS.
PART_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType({
    "system": frozenset(),
    "task": frozenset(),
    "demonstrations_header": frozenset(),
    "demonstration": frozenset({"number", "history", "next_id", "next_title", "next_facts", "next_rating"}),
    "history_header": frozenset(),
    "empty_history": frozenset(),
    "item_line": ITEM_FIELDS | {"rating"},
    "rating": frozenset({"value"}),
    "target": ITEM_FIELDS - {"number"},
    "candidates_header": frozenset(),
    "candidate_line": ITEM_FIELDS | {"label"},
    "candidate_evidence": frozenset({"titles"}),
    "persona": frozenset({"persona"}),
    "reasoning": frozenset(),
    "output_format": frozenset(),
    "answer_prefix": frozenset(),
})
# Values used to try every part once at load time, so a bad format spec fails there and not mid-run.
_SAMPLE: Mapping[str, Any] = MappingProxyType({
    "noun": "movie", "nouns": "movies", "n_history": 3, "n_candidates": 5, "k": 5, "first_label": "A",
    "last_label": "E", "labels": "A, B, C, D, E", "scale_min": 1, "scale_max": 5, "target_title": "Fargo (1996)",
    "order": "oldest first",
    "number": 1, "id": "1", "title": "Fargo (1996)", "facts": "Fargo (1996); genres: Crime", "rating": "",
    "value": 4.0, "label": "A", "history": "1. Fargo (1996)", "next_id": "2", "next_title": "Heat (1995)",
    "next_facts": "Heat (1995); genres: Action", "next_rating": "4", "titles": "Heat (1995); Ronin (1998)",
    "persona": "a student",
})

ALWAYS_REQUIRED = ("task", "history_header", "item_line", "output_format")
TASK_REQUIRED: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "rank-likelihood": ("answer_prefix",),
    "rank-verbalizer": ("candidates_header", "candidate_line"),
    "rank-listwise": ("candidates_header", "candidate_line"),
    "rating": ("target",),
    "explain": ("target",),
    "next-item": (),
})
VARIANT_REQUIRED: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "zero-shot": (),
    "few-shot": ("demonstrations_header", "demonstration"),
    "chain-of-thought": ("reasoning",),
})
META_KEYS = frozenset({"task", "variant", "description", "output", "answer_tokens", "answer_tokens_per_candidate"})
TOP_KEYS = frozenset({"template", "parts", "output_formats"})

_FORMATTER = string.Formatter()


@dataclass(frozen=True)
class Template:
    """One validated prompt template: its parts, named output formats and answer reserve.

    ``output_formats`` maps a format name to its indicator; ``output`` names the default one (which is also
    ``parts["output_format"]``). ``answer_tokens`` (+ ``answer_tokens_per_candidate`` per candidate) is the
    room kept free for the model's answer when a prompt is fitted to a token budget.
    """

    task: str
    variant: str
    parts: Mapping[str, str]
    output_formats: Mapping[str, str]
    output: str = "default"
    answer_tokens: int = 16
    answer_tokens_per_candidate: int = 0
    description: str = ""
    source: str = "<memory>"

    def part(self, name: str) -> str:
        """The text of one part ('' for an optional part the template leaves out)."""
        return self.parts.get(name, "")

    def has(self, name: str) -> bool:
        """Whether the template has a non-empty part ``name``."""
        return bool(self.parts.get(name))

    @property
    def answer_prefix(self) -> str:
        """Text the answer starts with (unformatted); '' when the answer starts the assistant's turn."""
        return self.parts.get("answer_prefix", "")

    @property
    def name(self) -> str:
        """``task.variant``, as in the file name of a built-in template."""
        return f"{self.task}.{self.variant}"


def template_fields(text: str) -> list[str]:
    """Named fields of a ``str.format`` string, in order (``{{`` and ``}}`` are literal braces)."""
    return [name for _, name, _, _ in _FORMATTER.parse(text) if name is not None]


def parse_template(data: Mapping[str, Any], *, source: str = "<memory>") -> Template:
    """Validate the contents of a template file; every problem is a ConfigError naming ``source`` and the field."""
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown table or key '{unknown[0]}'; a template has "
                          f"{', '.join(sorted(TOP_KEYS))}")
    meta = data.get("template")
    if not isinstance(meta, Mapping):
        raise ConfigError(f"{source}: missing table [template] with 'task' and 'variant'")
    bad_meta = sorted(set(meta) - META_KEYS)
    if bad_meta:
        raise ConfigError(f"{source}: unknown key 'template.{bad_meta[0]}'; allowed: {', '.join(sorted(META_KEYS))}")
    task, variant = meta.get("task"), meta.get("variant")
    if task not in TASKS:
        raise ConfigError(f"{source}: field 'template.task' must be one of {', '.join(TASKS)}, got {task!r}")
    if variant not in VARIANTS:
        raise ConfigError(f"{source}: field 'template.variant' must be one of {', '.join(VARIANTS)}, got {variant!r}")
    reserve = {}
    for key, default in (("answer_tokens", 16), ("answer_tokens_per_candidate", 0)):
        value = meta.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{source}: field 'template.{key}' must be a non-negative integer, got {value!r}")
        reserve[key] = value

    parts_data = data.get("parts")
    if not isinstance(parts_data, Mapping):
        raise ConfigError(f"{source}: missing table [parts]")
    parts: dict[str, str] = {}
    for name, text in parts_data.items():
        if name not in PART_FIELDS:
            raise ConfigError(f"{source}: unknown part 'parts.{name}'; known parts: {', '.join(PART_FIELDS)}")
        parts[name] = _check_part(text, f"parts.{name}", PART_FIELDS[name], source)
    formats_data = data.get("output_formats", {})
    if not isinstance(formats_data, Mapping):
        raise ConfigError(f"{source}: [output_formats] must be a table of name = text")
    output = meta.get("output", "default")
    if not isinstance(output, str) or not output:
        raise ConfigError(f"{source}: field 'template.output' must be a non-empty name, got {output!r}")
    formats: dict[str, str] = {}
    for name, text in formats_data.items():
        formats[name] = _check_part(text, f"output_formats.{name}", PART_FIELDS["output_format"], source)
    if output in formats:
        raise ConfigError(f"{source}: field 'output_formats.{output}' repeats the default format named by "
                          f"'template.output'; put that one in 'parts.output_format'")

    required = ALWAYS_REQUIRED + TASK_REQUIRED[task] + VARIANT_REQUIRED[variant]
    for name in required:
        if not parts.get(name, "").strip():
            raise ConfigError(f"{source}: required part 'parts.{name}' is missing or empty "
                              f"(task {task}, variant {variant})")
    prefix = parts.get("answer_prefix", "")
    if prefix and prefix != prefix.rstrip():
        raise ConfigError(f"{source}: field 'parts.answer_prefix' must not end with whitespace: the answer "
                          f"(a title, a label) brings its own leading space")
    formats = {output: parts["output_format"], **formats}
    return Template(task=task, variant=variant, parts=MappingProxyType(parts),
                    output_formats=MappingProxyType(formats), output=output,
                    answer_tokens=reserve["answer_tokens"],
                    answer_tokens_per_candidate=reserve["answer_tokens_per_candidate"],
                    description=str(meta.get("description", "")), source=source)


def _check_part(text: object, where: str, extra: frozenset[str], source: str) -> str:
    if not isinstance(text, str):
        raise ConfigError(f"{source}: field '{where}' must be a string, got {type(text).__name__}")
    allowed = COMMON_FIELDS | extra
    try:
        names = template_fields(text)
    except ValueError as exc:
        raise ConfigError(f"{source}: field '{where}' is not a valid format string ({exc})") from None
    for name in names:
        if name == "" or name.isdigit():
            raise ConfigError(f"{source}: field '{where}' uses a positional field '{{{name}}}'; use named fields: "
                              f"{', '.join(sorted(allowed))}")
        if name not in allowed:
            raise ConfigError(f"{source}: field '{where}' uses unknown field '{{{name}}}'; allowed here: "
                              f"{', '.join(sorted(allowed))}")
    try:
        text.format(**_SAMPLE)
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ConfigError(f"{source}: field '{where}' cannot be formatted ({exc})") from None
    return text


def load_template_file(path: str | Path) -> Template:
    """Read and validate one template file; errors name the file and the field."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: template file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    return parse_template(data, source=str(path))


def builtin_template_dir() -> Path:
    """The folder of the templates shipped with recllm."""
    return Path(str(resources.files("recllm.prompts") / "templates"))


def template_filename(task: str, variant: str) -> str:
    """File name of the template for ``task`` and ``variant`` in a template folder."""
    return f"{task}.{variant}.toml"


def load_template(task: str, variant: str = "zero-shot", *, path: str | Path | None = None) -> Template:
    """The template for ``task`` and ``variant``.

    ``path`` may name a template file (used as is; its task and variant must match) or a folder, where
    ``{task}.{variant}.toml`` overrides the built-in one; without it, or when the folder has no such file,
    the built-in template is used.
    """
    if task not in TASKS:
        raise ConfigError(f"unknown prompt task '{task}'; tasks: {', '.join(TASKS)}")
    if variant not in VARIANTS:
        raise ConfigError(f"unknown prompt variant '{variant}'; variants: {', '.join(VARIANTS)}")
    name = template_filename(task, variant)
    if path is not None:
        path = Path(path)
        if path.is_dir():
            candidate = path / name
            if candidate.is_file():
                return _matching(load_template_file(candidate), task, variant)
            log.info("no %s in %s; using the built-in template", name, path)
        else:
            return _matching(load_template_file(path), task, variant)
    builtin = builtin_template_dir() / name
    if not builtin.is_file():
        offered = ", ".join(v for t, v in available_templates() if t == task)
        raise ConfigError(f"no built-in template for task '{task}' variant '{variant}'; "
                          f"built-in variants of {task}: {offered or 'none'}")
    return load_template_file(builtin)


def _matching(template: Template, task: str, variant: str) -> Template:
    if (template.task, template.variant) != (task, variant):
        raise ConfigError(f"{template.source}: field 'template.task'/'template.variant' is "
                          f"{template.task}/{template.variant}, but {task}/{variant} was asked for")
    return template


def available_templates(folder: str | Path | None = None) -> list[tuple[str, str]]:
    """(task, variant) pairs with a template file in ``folder`` (default: the built-in folder), sorted."""
    root = Path(folder) if folder is not None else builtin_template_dir()
    found = []
    for file in sorted(root.glob("*.toml")):
        task, _, variant = file.stem.rpartition(".")
        if task in TASKS and variant in VARIANTS:
            found.append((task, variant))
    return found
