"""Explanations of a recommendation, checked against the user's history and the catalog.

The model writes why an item suits a user; the text is then checked: every title must be in the history or
be the item (with the right year when one is written), every genre and year must be true of an item cited in
the same sentence or of the recommended item, no unsupported number may appear, and the text must name the
item and give at least one reason tied to the user, and no claim the catalog cannot check (a director, a
sequel, an award, "the user's favourite"). A text that fails is replaced by a template built only from
catalog facts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from recllm.data.catalog import ItemCatalog, normalize_title
from recllm.llm.base import LLM
from recllm.prompts import HistoryLike, PromptBuilder, as_history
from recllm.tasks.genre_words import GenreReader
from recllm.tasks.titles import TitleScanner, fold

log = logging.getLogger(__name__)

_SENTENCE = re.compile(r"(?<!\bMrs\.)(?<!\bMr\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)(?<!\bvs\.)(?<!\bJr\.)"
                       r"(?<!\b[A-Z]\.)(?<=[.!?])\s+(?=[A-Z\"'(])")
"""A sentence break: not after an abbreviation in a title ("Mrs. Doubtfire", "E.T. the Extra-Terrestrial")."""


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


VIOLATION_KINDS = (("cites", "cites an item outside the history"), ("gives no reason", "no reason tied to the user"),
                   ("gives", "a wrong year for a title"), ("names", "a title not in the catalog"),
                   ("says", "a genre or year the items lack"), ("states the number", "an unsupported number"),
                   ("states '", "a span of time in words"), ("does not name", "does not name the item"),
                   ("claims", "a claim the catalog cannot check"), ("empty", "empty answer"))
"""(prefix of a checker violation, what kind of mistake it is), first match wins."""


def violation_kind(violation: str) -> str:
    """The kind of an ``ExplanationChecker`` violation, for counting mistakes by kind ("other" if unknown)."""
    return next((label for prefix, label in VIOLATION_KINDS if violation.startswith(prefix)), "other")


class ExplanationChecker:
    """Checks an explanation against the catalog: titles within ``history ∪ {item}`` (a title that several
    catalog entries share counts as the one the user may see cited), a year written with a title must be that
    title's, genres (named or described: "funny", "dystopian") and years must be true of the items a sentence
    cites, and numbers that are not years support nothing ("The user's favourite movie is 10."). With
    ``require_reason``, the text must also name the recommended item and give at least one reason tied to the
    user: a history title, or a genre the item shares with the history."""

    def __init__(self, catalog: ItemCatalog) -> None:
        self.catalog = catalog
        self.scanner = TitleScanner(catalog)
        self.genre_words = GenreReader({g for item in catalog for g in item.genres if g.lower() != "unknown"})
        self._by_title: dict[str, list[str]] = {}
        for entry in catalog:
            self._by_title.setdefault(normalize_title(entry.title), []).append(entry.id)

    def check(self, text: str, history: Sequence[str], item: str, *, require_reason: bool = False
              ) -> tuple[list[str], list[str]]:
        """(violations, cited item ids) of ``text``."""
        allowed = set(history) | {item}
        violations: list[str] = []
        cited: list[str] = []
        reasons: list[str] = []
        target = self.catalog[item]
        history_genres = {g for h in history if h in self.catalog for g in self.catalog[h].genres}
        for sentence in _SENTENCE.split(fold(" ".join(text.split()))):
            mentions = self._mentions(sentence, allowed)
            here = []
            for _, _, found, year in mentions:
                title = self.catalog[found].label()
                if found not in allowed:
                    violations.append(f"cites {title}, which is neither in the history nor the recommended item")
                    continue
                here.append(found)
                if found not in cited:
                    cited.append(found)
                if found != item:
                    reasons.append(f"cites {title}")
                if year is not None and year != self.catalog[found].year:
                    violations.append(f"gives {title} the year {year}")
            unknown = self.scanner.unknown_titles(sentence)
            covered = [(s, e) for s, e, _, _ in mentions]
            violations.extend(f"names {t!r}, which is not in the catalog" for t in unknown
                              if not any(t in sentence[s:e] or sentence[s:e] in t for s, e in covered))
            rest = sentence
            for start, end, _, _ in sorted(mentions, key=lambda x: -x[0]):
                rest = rest[:start] + " " * (end - start) + rest[end:]
            if len(mentions) >= 2:  # a list of titles: a title-like item in it that the catalog lacks is made up
                violations.extend(f"names {name!r}, which is not in the catalog" for name in self._listed_unknown(rest))
            facts = [self.catalog[i] for i in dict.fromkeys([*here, item])]
            names = ", ".join(f.label() for f in facts)
            for genre in dict.fromkeys(m.genre for m in self.genre_words.mentions(rest)):
                if not any(genre in f.genres for f in facts):
                    violations.append(f"says {genre} of {names}")
                elif genre in target.genres and genre in history_genres:
                    reasons.append(f"names {genre}, which the item shares with the history")
            for year, decade in self.scanner.years(rest):
                ok = any(f.year is not None and (f.year // 10 * 10 == year if decade else f.year == year)
                         for f in facts)
                if not ok:
                    violations.append(f"says {year}{'s' if decade else ''} of {names}")
            for number in _NUMBER.findall(_YEARISH.sub(" ", rest)):
                violations.append(f"states the number {number}, which nothing supports")
            for spelled in dict.fromkeys(m.group(0).lower() for m in _SPELLED_SPAN.finditer(rest)):
                violations.append(f"states '{spelled}', which nothing supports")
            for claim in dict.fromkeys(m.group(0).lower() for m in _UNCHECKABLE.finditer(rest)):
                violations.append(f"claims '{claim}', which the catalog cannot check")
        if require_reason:
            if item not in cited:
                violations.append(f"does not name the recommended item, {target.label()}")
            if not reasons:
                violations.append("gives no reason tied to the user (no history title, no genre shared with it)")
        return violations, cited

    def _listed_unknown(self, rest: str) -> list[str]:
        """Capitalised phrases of two words or more, standing alone between the commas or "and"s of a list whose
        known titles were blanked out of ``rest`` ("…, The Anticrus Line, Amadeus, …"), that are not genre
        words: titles (or names) the catalog does not have."""
        out = []
        for segment in _LIST_PARTS.split(rest):
            words = segment.strip(" .;:!?\"'").split()
            if not 2 <= len(words) <= _MAX_TITLE_WORDS or not words[0][:1].isupper():
                continue
            if all(w[:1].isupper() or w.lower() in _TITLE_SMALL_WORDS for w in words) and \
                    not self.genre_words.mentions(" ".join(words)):
                out.append(" ".join(words))
        return out

    def _mentions(self, sentence: str, allowed: set[str]) -> list[tuple[int, int, str, int | None]]:
        """``(start, end, item, year written)`` of each title in ``sentence``; a title several entries share
        resolves to an allowed one, or to the one of the year written with it; "Title (Year)" is read even for
        titles too short to look for in prose ("Ran (1985)")."""
        out: list[tuple[int, int, str, int | None]] = []
        for m in self.scanner.titles(sentence):
            same = self._by_title.get(normalize_title(self.catalog[m.item].title), [m.item])
            dated = [i for i in same if m.year is None or self.catalog[i].year == m.year] or same
            found = next((i for i in dated if i in allowed), dated[0])
            out.append((m.start, m.end, found, m.year))
        for written in _YEAR_IN_PARENS.finditer(sentence):
            if any(s <= written.start() < e for s, e, _, _ in out):
                continue
            year = int(written["year"])
            words = list(re.finditer(r"[^\s]+", sentence[:written.start()]))[-_MAX_TITLE_WORDS:]
            for first in reversed(range(len(words))):  # the shortest title ending before "(year)" first
                start = words[first].start()
                same = [i for i in self._by_title.get(normalize_title(sentence[start:written.start()]), [])
                        if self.catalog[i].year == year]
                if same:
                    found = next((i for i in same if i in allowed), same[0])
                    out.append((start, written.end(), found, year))
                    break
        return sorted(out)


_UNCHECKABLE = re.compile(
    r"\b(?:sequel|prequel|remake|reimagin\w*|based on|adapted|adaptation|directed|director|starring|stars|"
    r"actor|actress|cast|premiere\w*|festival|award\w*|oscars?|won|box office|inspired by|true story|"
    r"favou?rite (?:movie|film) of|user'?s favou?rite|favou?rite of (?:mine|many)|critics?|critically|"
    r"series|franchise|trilogy|saga|set in|takes place|\d+(?:st|nd|rd|th) century)\b",
    re.IGNORECASE)
"""Claims about a film that its catalog facts (title, year, genres) cannot confirm: who made it, what it is
based on or a sequel to (or part of a series), awards, where or when its story is set, what the user's
favourite is. A checked explanation makes none."""
_SPELLED_SPAN = re.compile(
    r"\b(?:a|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|a few|"
    r"several|many) (?:decades?|years?|centur(?:y|ies)|generations?)\b", re.IGNORECASE)
"""Spans of time spelled out ("a hit for over two decades"): numbers in words that nothing in the catalog
supports, like the digits ``_NUMBER`` finds."""
_LIST_PARTS = re.compile(r",|;|\band\b|\bor\b")
_TITLE_SMALL_WORDS = frozenset({"a", "an", "the", "of", "and", "in", "on", "at", "to", "for", "with", "from", "by",
                                "de", "la", "le"})
_YEAR_IN_PARENS = re.compile(r"\((?P<year>\d{4})\)")
_MAX_TITLE_WORDS = 8
_YEARISH = re.compile(r"(?<![0-9])(?:18|19|20)\d{2}(?:'?s)?(?![0-9])|'\d0s\b|\b\d0'?s\b")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?(?![\w])")


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
        violations, cited = self.checker.check(text, history, item, require_reason=True)
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
