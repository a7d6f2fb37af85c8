"""Item profiles written by a language model (data augmentation in the manner of LLMRec), checked against facts.

The model is given one item's catalog facts (title, year, genres, any extra field) and asked for one sentence on
its themes, tone and audience. A profile is kept only when it passes the check: no other catalog title, no year
other than the item's, no catalog genre the item does not have, and real prose (a few words, not the prompt
echoed back). Profiles are generated once: greedy answers go through the persistent response cache, so a second
run over the same catalog and model costs no model time. ``profiled_catalog`` adds the kept profiles to a
catalog as the ``profile`` field, which every item-text consumer (embedders, prompts) then reads.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from recllm.data.catalog import ItemCatalog
from recllm.llm.base import LLM, GenerationRequest
from recllm.tasks.titles import TitleScanner

log = logging.getLogger(__name__)

PROFILE_FIELD = "profile"
"""The catalog ``extra`` field that holds a kept profile."""
_MIN_WORDS = 6
_CHUNK = 64
_WORD = re.compile(r"[A-Za-z']+")
_INNER_NAME = re.compile(r"(?<=[a-z0-9,;:)] )([A-Z][A-Za-z']+)")
"""A capitalised word that follows a lower-case word (so not the start of a sentence)."""
_ECHOES = ("describe this film", "themes, tone", "tone and audience")


@dataclass(frozen=True)
class ItemProfile:
    """What the model wrote for ``item``: ``generated`` raw, ``text`` the cleaned sentence, ``kept`` whether it
    passed the check, ``violations`` each reason it did not."""

    item: str
    text: str
    generated: str
    kept: bool
    violations: tuple[str, ...] = ()


@dataclass
class ProfileReport:
    """Profiles by item and how many the check kept; ``violations`` counts each kind of failure."""

    profiles: dict[str, ItemProfile] = field(default_factory=dict)
    violations: dict[str, int] = field(default_factory=dict)

    @property
    def kept(self) -> int:
        return sum(p.kept for p in self.profiles.values())

    @property
    def kept_share(self) -> float:
        return self.kept / len(self.profiles) if self.profiles else 0.0

    def as_dict(self) -> dict[str, object]:
        return {"items": len(self.profiles), "kept": self.kept, "kept_share": self.kept_share,
                "violations": dict(sorted(self.violations.items()))}


class ProfileWriter:
    """Writes and checks one profile per item with ``llm`` (greedy, at most ``max_tokens`` new tokens)."""

    def __init__(self, llm: LLM, catalog: ItemCatalog, *, max_tokens: int = 48) -> None:
        if max_tokens < 8:
            raise ValueError(f"max_tokens must be at least 8 for a sentence, got {max_tokens}")
        self.llm = llm
        self.catalog = catalog
        self.max_tokens = max_tokens
        self.scanner = TitleScanner(catalog)

    def request(self, item: str) -> GenerationRequest:
        """The greedy chat request that asks for ``item``'s profile from its facts."""
        ask = (f"Describe this film in one sentence: its themes, tone and audience. Film: {self._facts(item)}. "
               "Do not name other films or years.")
        return GenerationRequest.chat([{"role": "user", "content": ask}], max_new_tokens=self.max_tokens,
                                      temperature=0.0, stop=["\n"])

    def write(self, items: Sequence[str]) -> ProfileReport:
        """Profiles for ``items`` (catalog ids), generated in batches of ``_CHUNK`` and checked."""
        unknown = [item for item in items if item not in self.catalog]
        if unknown:
            raise KeyError(f"cannot write profiles of items missing from the catalog: {unknown[:5]}")
        report = ProfileReport()
        completions = []
        for start in range(0, len(items), _CHUNK):  # in chunks, so a cached model keeps what a stopped run wrote
            completions += self.llm.generate([self.request(item) for item in items[start:start + _CHUNK]])
            if len(items) > _CHUNK:
                log.info("item profiles: %d of %d written", len(completions), len(items))
        for item, completion in zip(items, completions, strict=True):
            profile = self.check(item, completion.text)
            report.profiles[item] = profile
            for violation in profile.violations:
                kind = violation.split(":", 1)[0]
                report.violations[kind] = report.violations.get(kind, 0) + 1
        log.info("item profiles: %d of %d kept (%s)", report.kept, len(items),
                 ", ".join(f"{k} {v}" for k, v in sorted(report.violations.items())) or "no violations")
        return report

    def check(self, item: str, generated: str) -> ItemProfile:
        """The profile of ``item`` from the model's raw text, with every violation of the catalog facts."""
        facts = self.catalog[item]
        text = _clean(generated)
        violations: list[str] = []
        if len(_WORD.findall(text)) < _MIN_WORDS:
            violations.append(f"too short: {text!r}")
        elif any(echo in text.lower() for echo in _ECHOES):
            violations.append(f"echo: {text!r}")
        for mention in self.scanner.titles(text):
            if mention.item != item:
                violations.append(f"other title: {self.catalog.title(mention.item)}")
        for year, decade in TitleScanner.years(text):
            if facts.year is None or (year != facts.year and not (decade and year == facts.year // 10 * 10)):
                violations.append(f"year: {year}{'s' if decade else ''}")
        own = {g.lower() for g in facts.genres}
        title_genres = {g.lower() for g in self.scanner.genres(facts.display_title)}
        for genre in self.scanner.genres(text):
            if genre.lower() not in own and genre.lower() not in title_genres:
                violations.append(f"genre: {genre}")
        violations.extend(f"name: {name}" for name in self._unsupported_names(item, text))
        return ItemProfile(item, text, generated, not violations, tuple(violations))

    def _unsupported_names(self, item: str, text: str) -> list[str]:
        """Capitalised words inside a sentence that the item's facts do not contain (people, places, studios,
        nationalities): claims the catalog cannot support, so the profile is not kept."""
        known = {w.lower() for w in _WORD.findall(self._facts(item))}
        known |= {w.lower() for genre in self.scanner.genres(text) for w in _WORD.findall(genre)}
        names = []
        for match in _INNER_NAME.finditer(text):
            word = match.group(1)
            if word.lower().strip("'s") not in known and word.lower() not in known:
                names.append(word)
        return names

    def _facts(self, item: str) -> str:
        """The item's facts as the prompt states them (a profile already in the catalog is left out)."""
        facts = self.catalog[item]
        parts = [facts.label()]
        if facts.genres:
            parts.append("genres: " + ", ".join(facts.genres))
        parts.extend(f"{key}: {value}" for key, value in facts.extra.items() if value and key != PROFILE_FIELD)
        return "; ".join(parts)


def _clean(text: str) -> str:
    """The first line of an answer, without a leading label or wrapping quotes, ending in a full stop."""
    line = text.strip().split("\n", 1)[0].strip()
    line = re.sub(r"^(profile|answer|description)\s*:\s*", "", line, flags=re.IGNORECASE).strip().strip('"').strip()
    sentence = re.match(r"^(.{20,}?[.!?])[\"']?(\s|$)", line)
    if sentence:
        line = sentence.group(1)
    elif line and line[-1].isalnum():
        line = line.rsplit(" ", 1)[0] + "." if " " in line else line + "."  # cut at the last whole word
    return line


def profiled_catalog(catalog: ItemCatalog, report: ProfileReport) -> ItemCatalog:
    """``catalog`` with each kept profile in the item's ``profile`` field (items without one are unchanged)."""
    items = []
    for item in catalog:
        profile = report.profiles.get(item.id)
        if profile is not None and profile.kept:
            item = replace(item, extra={**item.extra, PROFILE_FIELD: profile.text})
        items.append(item)
    return ItemCatalog(items)


def write_profiles(llm: LLM, catalog: ItemCatalog, items: Sequence[str] | None = None, *,
                   max_tokens: int = 48) -> ProfileReport:
    """Checked profiles of ``items`` (default: the whole catalog) by ``llm``."""
    return ProfileWriter(llm, catalog, max_tokens=max_tokens).write(list(items) if items is not None else catalog.ids)
