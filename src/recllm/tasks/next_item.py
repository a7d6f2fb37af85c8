"""Zero-shot next-item prediction: the model names a movie, matched to the catalog by title."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recllm.data.catalog import ItemCatalog
from recllm.data.itemlist import ItemList
from recllm.llm.base import LLM
from recllm.prompts import HistoryLike, PromptBuilder, as_history
from recllm.tasks.titles import TitleScanner

log = logging.getLogger(__name__)

_MARKER = re.compile(r"^\s*(?:[-*•]|\d{1,2}\s*[.)]|(?:title|answer|movie|next movie)\s*:)\s*", re.IGNORECASE)
_TITLE_YEAR = re.compile(r"(?P<title>[^\n()]{1,80}?)\s*\((?P<year>\d{4})\)")


@dataclass(frozen=True)
class NextItemResult:
    """``items``: matched catalog items not in the history, in order of first mention (score 1/rank);
    ``hallucinated``: named titles matching no catalog item; ``repeated``: history items named again;
    ``format_error``: nothing readable; ``raw``: the model's answers."""

    items: ItemList
    hallucinated: tuple[str, ...]
    repeated: tuple[str, ...]
    format_error: bool
    raw: tuple[str, ...]


class ZeroShotNextItem:
    """Asks the model for the next movie with the ``next-item`` prompt and grounds the answer in the catalog.

    An answer is read as titles: each "Title (Year)", else each line (list markers and "Title:" removed),
    fuzzily looked up in the catalog (``cutoff``); catalog titles inside prose are found as well. ``n_samples``
    above 1 adds sampled answers (seeded) to get more than one item.
    """

    def __init__(self, llm: LLM, catalog: ItemCatalog, *, variant: str = "zero-shot", max_new_tokens: int = 24,
                 n_samples: int = 1, temperature: float = 0.8, seed: int = 0, cutoff: float = 0.85,
                 **builder_options: Any) -> None:
        self.llm, self.catalog = llm, catalog
        self.max_new_tokens, self.n_samples, self.temperature, self.seed = max_new_tokens, n_samples, temperature, seed
        self.cutoff = cutoff
        self.builder = PromptBuilder(catalog, "next-item", variant, llm=llm, **builder_options)
        self.scanner = TitleScanner(catalog)
        self.n_hallucinated = 0

    def recommend(self, user_history: HistoryLike, k: int = 10) -> NextItemResult:
        """At most ``k`` catalog items the model names for a user with ``user_history``, history excluded."""
        history = [e.item for e in as_history(user_history)]
        prompt = self.builder.build(history)
        requests = [prompt.request(self.llm, max_new_tokens=self.max_new_tokens)]
        requests += [prompt.request(self.llm, max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                                    seed=self.seed + i) for i in range(1, self.n_samples)]
        texts = tuple(c.text for c in self.llm.generate(requests))
        result = self.read(texts, history, k)
        self.n_hallucinated += len(result.hallucinated)
        if result.hallucinated:
            log.info("next-item: %d title(s) not in the catalog: %s", len(result.hallucinated), result.hallucinated)
        return result

    def read(self, texts: Sequence[str], history: Sequence[str], k: int = 10) -> NextItemResult:
        """Ground answers ``texts`` in the catalog (exposed for scripted checks)."""
        seen = set(history)
        found: list[str] = []
        hallucinated: list[str] = []
        repeated: list[str] = []
        for text in texts:
            for ref in self._references(text):
                item, raw = ref
                if item is None:
                    hallucinated.append(raw)
                elif item in seen:
                    if item not in repeated:
                        repeated.append(item)
                elif item not in found:
                    found.append(item)
        found = found[:k]
        scores = 1.0 / np.arange(1, len(found) + 1) if found else np.zeros(0)
        return NextItemResult(ItemList(tuple(found), scores), tuple(hallucinated), tuple(repeated),
                              not found and not hallucinated and not repeated, tuple(texts))

    def _references(self, text: str) -> list[tuple[str | None, str]]:
        refs: list[tuple[str | None, str]] = []
        for line in text.splitlines():
            line = _MARKER.sub("", line).strip().strip("\"'*_")
            if not line:
                continue
            named: list[tuple[int, int, str]] = [(m.start, m.end, m.item) for m in self.scanner.titles(line)]
            for m in _TITLE_YEAR.finditer(line):
                if any(s < m.end() and m.start() < e for s, e, _ in named):
                    continue
                title = _MARKER.sub("", m.group("title")).strip().strip("\"'*_")
                item = self.catalog.lookup(f"{title} ({m['year']})", cutoff=self.cutoff)
                if item is not None:
                    named.append((m.start(), m.end(), item.id))
                else:
                    refs.append((None, f"{title} ({m['year']})"))
            if not named and not _TITLE_YEAR.search(line) and len(line) <= 60:
                item = self.catalog.lookup(line, cutoff=self.cutoff)  # a bare title on its own line
                if item is not None:
                    named.append((0, len(line), item.id))
            refs.extend((i, i) for _, _, i in sorted(named))
        return refs
