"""Explanations of a recommendation, checked against the user's history and the catalog.

The model writes why an item suits a user; the text is then checked: every title must be in the history or
be the item, every genre and year must be true of an item cited in the same sentence or of the recommended
item. A text that fails is replaced by a template built only from catalog facts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from recllm.data.catalog import ItemCatalog
from recllm.llm.base import LLM
from recllm.prompts import HistoryLike, PromptBuilder, as_history
from recllm.tasks.titles import TitleScanner, fold

log = logging.getLogger(__name__)

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")


@dataclass(frozen=True)
class Explanation:
    """An explanation of ``item`` for one user.

    ``text`` is what to show: the model's text when it passed the check, else the grounded template.
    ``generated`` is the model's raw text; ``grounded`` whether it passed the check; ``violations`` each
    unsupported mention in it; ``fallback_used`` whether ``text`` is the template; ``cited`` the item ids
    ``text`` names (always within history and the item).
    """

    item: str
    text: str
    generated: str
    grounded: bool
    violations: tuple[str, ...] = ()
    fallback_used: bool = False
    cited: tuple[str, ...] = field(default=())


def _sentences(text: str, limit: int = 3) -> str:
    """At most ``limit`` whole sentences of ``text`` (a cut-off last sentence is dropped when others exist)."""
    text = " ".join(text.strip().split())
    parts = [p for p in _SENTENCE.split(text) if p]
    if len(parts) > 1 and not parts[-1].rstrip().endswith((".", "!", "?", '"')):
        parts = parts[:-1]
    return " ".join(parts[:limit])


class ExplanationChecker:
    """Checks an explanation against the catalog: titles within ``history ∪ {item}``, genres and years true
    of the items a sentence cites."""

    def __init__(self, catalog: ItemCatalog) -> None:
        self.catalog = catalog
        self.scanner = TitleScanner(catalog)

    def check(self, text: str, history: Sequence[str], item: str) -> tuple[list[str], list[str]]:
        """(violations, cited item ids) of ``text``."""
        allowed = set(history) | {item}
        violations: list[str] = []
        cited: list[str] = []
        for sentence in _SENTENCE.split(fold(" ".join(text.split()))):
            mentions = self.scanner.titles(sentence)
            here = []
            for m in mentions:
                title = self.catalog[m.item].label()
                if m.item not in allowed:
                    violations.append(f"cites {title}, which is neither in the history nor the recommended item")
                    continue
                here.append(m.item)
                if m.item not in cited:
                    cited.append(m.item)
                if m.year is not None and m.year != self.catalog[m.item].year:
                    violations.append(f"gives {title} the year {m.year}")
            unknown = self.scanner.unknown_titles(sentence)
            violations.extend(f"names {t!r}, which is not in the catalog" for t in unknown)
            rest = sentence
            for m in sorted(mentions, key=lambda x: -x.start):
                rest = rest[:m.start] + " " + rest[m.end:]
            facts = [self.catalog[i] for i in dict.fromkeys([*here, item])]
            names = ", ".join(f.label() for f in facts)
            for genre in self.scanner.genres(rest):
                if not any(genre in f.genres for f in facts):
                    violations.append(f"says {genre} of {names}")
            for year, decade in self.scanner.years(rest):
                ok = any(f.year is not None and (f.year // 10 * 10 == year if decade else f.year == year)
                         for f in facts)
                if not ok:
                    violations.append(f"says {year}{'s' if decade else ''} of {names}")
        return violations, cited


class Explainer:
    """Explains why ``item`` suits a user with the ``explain`` prompt, checked, with a grounded fallback.

    Counters ``n_explained``, ``n_fallbacks`` and ``n_violations`` (unsupported mentions) accumulate over
    calls for diagnostics.
    """

    def __init__(self, llm: LLM, catalog: ItemCatalog, *, variant: str = "zero-shot", max_new_tokens: int = 96,
                 max_sentences: int = 3, **builder_options: Any) -> None:
        self.llm, self.catalog = llm, catalog
        self.max_new_tokens, self.max_sentences = max_new_tokens, max_sentences
        self.builder = PromptBuilder(catalog, "explain", variant, llm=llm, **builder_options)
        self.checker = ExplanationChecker(catalog)
        self.n_explained = self.n_fallbacks = self.n_violations = 0

    def explain(self, user_history: HistoryLike, item: str) -> Explanation:
        """The checked explanation of ``item`` for a user with ``user_history``."""
        return self.explain_many([(user_history, item)])[0]

    def explain_many(self, pairs: Sequence[tuple[HistoryLike, str]]) -> list[Explanation]:
        """Checked explanations for ``(history, item)`` pairs (generated in one batch)."""
        histories = [[e.item for e in as_history(h)] for h, _ in pairs]
        prompts = [self.builder.build(h, target=str(item)) for h, (_, item) in zip(histories, pairs, strict=True)]
        completions = self.llm.generate([p.request(self.llm, max_new_tokens=self.max_new_tokens) for p in prompts])
        out = []
        for comp, history, (_, item) in zip(completions, histories, pairs, strict=True):
            out.append(self._checked(comp.text, history, str(item)))
        return out

    def _checked(self, generated: str, history: list[str], item: str) -> Explanation:
        self.n_explained += 1
        text = _sentences(generated, self.max_sentences)
        violations, cited = self.checker.check(text, history, item)
        if text and not violations:
            return Explanation(item, text, generated, True, (), False, tuple(cited))
        if not text:
            violations = ["empty answer"]
        self.n_fallbacks += 1
        self.n_violations += len(violations)
        log.info("explanation of %s failed the check (%s); grounded template used", item, "; ".join(violations))
        fallback = template_explanation(self.catalog, history, item)
        problems, cited = self.checker.check(fallback, history, item)
        if problems:  # the template states only catalog facts; a failure here is a bug in the checker
            log.warning("template explanation of %s did not pass its own check: %s", item, problems)
        return Explanation(item, fallback, generated, False, tuple(violations), True, tuple(cited))


def template_explanation(catalog: ItemCatalog, history: Sequence[str], item: str, *, max_cited: int = 2,
                         era: int = 5) -> str:
    """A short explanation from catalog facts only: genres shared with history items, and history items from
    a similar time (within ``era`` years)."""
    target = catalog[item]
    seen = [h for h in dict.fromkeys(history) if h != item and h in catalog]
    shared = sorted(((len(set(catalog[h].genres) & set(target.genres)), -i, h) for i, h in enumerate(seen)),
                    reverse=True)
    by_genre = [h for n, _, h in shared if n > 0][:max_cited]
    sentences = []
    if by_genre:
        genres = [g for g in target.genres if any(g in catalog[h].genres for h in by_genre)]
        titles = " and ".join(catalog[h].label() for h in by_genre)
        sentences.append(f"{target.label()} is {_join(genres)} like {titles}, which you watched.")
    if target.year is not None:
        near = [h for h in seen if h not in by_genre and catalog[h].year is not None
                and abs(catalog[h].year - target.year) <= era][:1]  # type: ignore[operator]
        if near:
            # no bare year here: the checker pairs a year with the title nearest to it in the sentence
            sentences.append(f"It comes from the same era as {catalog[near[0]].label()}, which you watched.")
    if not sentences:
        facts = f" ({_join(list(target.genres))})" if target.genres else ""
        sentences.append(f"{target.label()}{facts} is a suggestion beyond what you have watched so far.")
    return " ".join(sentences)


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]
