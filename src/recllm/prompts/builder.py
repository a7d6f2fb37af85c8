"""Building prompts: task description + behaviour injection (history, demonstrations) + output-format indicator.

``PromptBuilder`` renders a template for one user at a time and fits the result to a token budget by
dropping the oldest history items first, then the least similar demonstrations; the task description,
candidates and output format are never cut. What was dropped is reported in ``Prompt.trim``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from recllm.config import build, load_toml
from recllm.data.catalog import ItemCatalog
from recllm.data.dataset import Dataset
from recllm.errors import ConfigError
from recllm.llm.base import LLM, CapabilityError
from recllm.prompts.evidence import NearestHistory
from recllm.prompts.fewshot import Demonstration, FewShotSelector, as_history, user_history
from recllm.prompts.labels import (
    LABEL_STYLES,
    TokenCounter,
    check_single_tokens,
    estimate_tokens,
    piece_counter,
    verbalizer_labels,
)
from recllm.prompts.prompt import HistoryEntry, Prompt, PromptError, TrimReport
from recllm.prompts.templates import RANKING_TASKS, TARGET_TASKS, Template, load_template

log = logging.getLogger(__name__)
DEFAULT_MAX_HISTORY = 20
"""History items shown by default: the newest 20, as LlamaRec does (long prompts cost time and distract)."""

Order = Literal["oldest-first", "newest-first"]
EvidenceName = Literal["none", "nearest-history"]
DEFAULT_EVIDENCE_PART = " (close to: {titles})"
DEFAULT_PERSONA_PART = "This user is {persona}."
"""How a stated user attribute reads when the template has no ``persona`` part."""
"""How a candidate's evidence follows its line when the template has no ``candidate_evidence`` part."""
TaskName = Literal["rank-likelihood", "rank-verbalizer", "rank-listwise", "rating", "explain", "next-item"]
VariantName = Literal["zero-shot", "few-shot", "chain-of-thought"]
HistoryInput = Iterable[str | HistoryEntry | tuple[str, float | None]]


class PromptConfig(BaseModel):
    """Everything that shapes a prompt, loadable from TOML; see ``PromptBuilder`` for each field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: TaskName
    variant: VariantName = "zero-shot"
    template: Path | None = None
    n_shots: int = Field(default=2, ge=0)
    demo_history: int = Field(default=5, ge=1)
    order: Order = "oldest-first"
    max_history: int | None = Field(default=DEFAULT_MAX_HISTORY, ge=0)
    min_history: int = Field(default=5, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)
    reserve: int | None = Field(default=None, ge=0)
    label_style: Literal["letters", "numbers", "lowercase", "mixed", "auto"] = "letters"
    output: str | None = None
    noun: str = "movie"
    nouns: str = "movies"
    scale_min: int = 1
    scale_max: int = 5
    evidence: EvidenceName = "none"
    evidence_k: int = Field(default=2, ge=1)
    evidence_embedder: str = "st"
    persona: str | None = None

    @classmethod
    def from_toml(cls, path: str | Path, table: str | None = "prompt") -> PromptConfig:
        """Read the ``[prompt]`` table (or the whole file when ``table`` is None) of a TOML file."""
        data = load_toml(path)
        if table is not None:
            if table not in data:
                raise ConfigError(f"{path}: missing table [{table}]")
            data = data[table]
        return build(cls, dict(data), where=f"{path}" + (f" [{table}]" if table else ""))


@dataclass(frozen=True)
class _Draft:
    """One rendering of a prompt at a given amount of history and demonstrations."""

    messages: tuple[Mapping[str, str], ...]
    text: str
    answer_prefix: str
    history: tuple[str, ...]
    demonstrations: tuple[Demonstration, ...]
    tokens: int


class PromptBuilder:
    """Renders the prompt of one task and variant for a user, fitted to the model's context.

    - ``template``: a ``Template``, a template file or a folder of ``{task}.{variant}.toml`` files that
      override the built-in ones (None: built-in).
    - ``llm`` counts tokens exactly as the model reads the prompt (its chat template included) and gives the
      default budget (its context length); ``counter`` is a plain ``text -> tokens`` alternative. Without
      either, tokens are estimated at 4 characters each.
    - ``max_tokens``: the budget (default: the LLM's context length; None and no LLM: no trimming);
      ``reserve``: tokens kept free for the answer (default from the template; for likelihood ranking, the
      longest candidate title).
    - ``train``: training interactions only; the source of a user's history when ``build`` gets only the
      user, and of few-shot demonstrations (``n_shots`` users, ``demo_history`` items each) unless
      ``few_shot`` gives a selector.
    - ``order``: the history shown oldest first (newest last) or newest first; ``max_history`` keeps only
      the newest items before budgeting (default 20, LlamaRec's history length: a whole MovieLens history
      of hundreds of items makes a prompt of thousands of tokens, 5-10x slower on CPU; None keeps all
      that fit the budget); ``min_history`` items are kept before demonstrations are dropped.
    - ``label_style``: verbalizer labels (checked to be single tokens for the LLM); ``output``: a named
      output format of the template (e.g. ``json`` for listwise); ``noun``/``nouns``, ``scale``: wording.
    - ``evidence`` (ranking prompts with candidate lines): ``"nearest-history"`` writes beside each candidate
      the ``evidence_k`` shown history items closest to it by the embedding of their catalog text
      (``evidence_embedder``, see ``recllm.prompts.evidence``); a ``NearestHistory`` brings its own vectors.
    - ``persona``: a user attribute stated in the prompt, e.g. "a female" ("This user is a female.", the
      template's ``persona`` part), as FaiRLLM's sensitive-attribute prompts do; None states nothing.
    """

    def __init__(
        self,
        catalog: ItemCatalog,
        task: str,
        variant: str = "zero-shot",
        *,
        template: Template | str | Path | None = None,
        llm: LLM | None = None,
        counter: TokenCounter | None = None,
        max_tokens: int | None = None,
        reserve: int | None = None,
        train: Dataset | None = None,
        few_shot: FewShotSelector | None = None,
        n_shots: int = 2,
        demo_history: int = 5,
        order: Order = "oldest-first",
        max_history: int | None = DEFAULT_MAX_HISTORY,
        min_history: int = 5,
        label_style: str = "letters",
        output: str | None = None,
        noun: str = "movie",
        nouns: str = "movies",
        scale: tuple[int, int] = (1, 5),
        evidence: EvidenceName | NearestHistory = "none",
        evidence_k: int = 2,
        evidence_embedder: str = "st",
        persona: str | None = None,
    ) -> None:
        if isinstance(template, Template):
            self.template = template
            if (template.task, template.variant) != (task, variant):
                raise ConfigError(f"{template.source}: template is {template.name}, but {task}.{variant} was asked for")
        else:
            self.template = load_template(task, variant, path=template)
        if order not in ("oldest-first", "newest-first"):
            raise ConfigError(f"order must be 'oldest-first' or 'newest-first', got {order!r}")
        if max_tokens is not None and max_tokens < 1:
            raise ConfigError(f"max_tokens must be positive, got {max_tokens}")
        if label_style not in LABEL_STYLES:
            raise ConfigError(f"label_style must be one of {', '.join(LABEL_STYLES)}, got {label_style!r}")
        if min_history < 0 or n_shots < 0 or (max_history is not None and max_history < 0):
            raise ConfigError("min_history, n_shots and max_history must not be negative")
        self.output = output or self.template.output
        if self.output not in self.template.output_formats:
            raise ConfigError(f"{self.template.source}: no output format '{self.output}'; the template offers "
                              f"{', '.join(self.template.output_formats)}")
        self.catalog = catalog
        self.task = task
        self.variant = variant
        self.llm = llm
        self.counter = counter
        self.max_tokens = max_tokens if max_tokens is not None else (llm.context_length if llm else None)
        self.reserve = reserve
        self.train = train
        self.n_shots = n_shots
        self.order = order
        self.max_history = max_history
        self.min_history = min_history
        self.label_style = label_style
        self.noun, self.nouns = noun, nouns
        self.scale = scale
        if variant == "few-shot":
            if few_shot is None:
                if train is None:
                    raise ConfigError("the few-shot variant needs 'train' (training interactions) or a 'few_shot' "
                                      "selector to draw demonstrations from")
                few_shot = FewShotSelector(train, history_length=demo_history)
            if n_shots == 0:
                log.warning("few-shot prompt with n_shots=0: no demonstrations will be shown")
        self.few_shot = few_shot if variant == "few-shot" else None
        if counter is not None and llm is not None:
            log.debug("both llm and counter given: tokens are counted by the LLM")
        self.evidence = self._evidence(evidence, evidence_k, evidence_embedder)
        if persona is not None and not persona.strip():
            raise ConfigError("persona must state something (e.g. 'a female'), or be None")
        self.persona = persona.strip() if persona is not None else None
        self._label_cache: dict[int, tuple[str, ...]] = {}
        source = llm if llm is not None else counter
        self._piece = piece_counter(source) if source is not None else estimate_tokens

    @classmethod
    def from_config(cls, config: PromptConfig, catalog: ItemCatalog, *, llm: LLM | None = None,
                    counter: TokenCounter | None = None, train: Dataset | None = None,
                    few_shot: FewShotSelector | None = None) -> PromptBuilder:
        """A builder from a validated ``PromptConfig``."""
        return cls(catalog, config.task, config.variant, template=config.template, llm=llm, counter=counter,
                   max_tokens=config.max_tokens, reserve=config.reserve, train=train, few_shot=few_shot,
                   n_shots=config.n_shots, demo_history=config.demo_history, order=config.order,
                   max_history=config.max_history, min_history=config.min_history,
                   label_style=config.label_style, output=config.output, noun=config.noun, nouns=config.nouns,
                   scale=(config.scale_min, config.scale_max), evidence=config.evidence,
                   evidence_k=config.evidence_k, evidence_embedder=config.evidence_embedder, persona=config.persona)

    # ---- public ---------------------------------------------------------------------------------------
    @property
    def counted_by(self) -> str:
        """What counted the tokens: ``backend:model``, ``counter`` or ``estimate`` (4 characters a token)."""
        if self.llm is not None:
            return f"{self.llm.backend}:{self.llm.model_name}"
        return "counter" if self.counter is not None else "estimate"

    def count(self, messages: Sequence[Mapping[str, str]], text: str, answer_prefix: str = "") -> int:
        """Tokens of a prompt as the model reads it (chat template and answer prefix included)."""
        if self.llm is not None:
            try:
                rendered = self.llm.render_chat([dict(m) for m in messages]) + answer_prefix
            except CapabilityError:
                rendered = text
            return self.llm.count_tokens(rendered)
        if self.counter is not None:
            return int(self.counter(text))
        return estimate_tokens(text)

    def build(
        self,
        history: HistoryInput | None = None,
        *,
        user: object | None = None,
        candidates: Sequence[str] = (),
        target: str | None = None,
        k: int | None = None,
    ) -> Prompt:
        """The prompt for one user.

        ``history`` (item ids, ``(id, rating)`` pairs or ``HistoryEntry``, oldest first) is what the model may
        see; without it the ``user``'s history is read from ``train``. ``user`` also keeps the user out of
        their own demonstrations. ``candidates`` (ranking tasks) are shown in the given order; ``target`` is
        the item to rate or explain; ``k`` how many items a listwise answer lists (default: all).
        """
        entries = self._history(history, user)
        candidates = tuple(str(c) for c in candidates)
        self._check_inputs(candidates, target)
        total = len(entries)
        if self.max_history is not None and len(entries) > self.max_history:
            entries = entries[len(entries) - self.max_history:]
        demos = self._demonstrations(user, entries)
        labels, choices = self._labels(candidates)
        continuations = tuple(" " + self.catalog[c].label() for c in candidates) \
            if self.task == "rank-likelihood" else ()
        fields = self._common_fields(candidates, labels, target, k)
        reserve = self._reserve(candidates, continuations)

        drafts: dict[tuple[int, int], _Draft] = {}

        def draft(h: int, d: int) -> _Draft:
            if (h, d) not in drafts:
                drafts[(h, d)] = self._draft(entries[len(entries) - h:] if h else [], demos[:d], candidates,
                                             labels, target, fields)
            return drafts[(h, d)]

        h, d = self._fit(len(entries), len(demos), reserve, draft)
        chosen = draft(h, d)
        trim = TrimReport(history_total=total, history_kept=h, demonstrations_total=len(demos),
                          demonstrations_kept=d, tokens=chosen.tokens, reserve=reserve, max_tokens=self.max_tokens)
        if h < len(entries) or d < len(demos):  # the budget cut something (max_history cuts by design)
            log.info("%s prompt fitted to %s tokens (reserve %d): kept %d of %d history items, %d of %d "
                     "demonstrations", self.template.name, self.max_tokens, reserve, h, len(entries), d, len(demos))
        return Prompt(
            task=self.task, variant=self.variant, messages=chosen.messages, text=chosen.text,
            answer_prefix=chosen.answer_prefix, candidates=candidates, labels=labels, choices=choices,
            continuations=continuations, history=chosen.history,
            demonstration_users=tuple(demo.user for demo in chosen.demonstrations), target=target,
            output=self.output, n_tokens=chosen.tokens, counted_by=self.counted_by, trim=trim,
            template=self.template.source)

    # ---- inputs ---------------------------------------------------------------------------------------
    def _evidence(self, evidence: EvidenceName | NearestHistory, k: int, embedder: str) -> NearestHistory | None:
        if isinstance(evidence, NearestHistory):
            found: NearestHistory | None = evidence
        elif evidence == "none":
            return None
        elif evidence == "nearest-history":
            if k < 1:
                raise ConfigError(f"evidence_k must be at least 1, got {k}")
            found = NearestHistory.from_catalog(self.catalog, embedder, k=k)
        else:
            raise ConfigError(f"evidence must be 'none' or 'nearest-history', got {evidence!r}")
        if not self.template.has("candidate_line"):
            raise ConfigError(f"{self.template.name} prompts show no candidate lines to put evidence beside; "
                              "evidence works with rank-verbalizer and rank-listwise prompts")
        return found

    def _history(self, history: HistoryInput | None, user: object | None) -> list[HistoryEntry]:
        if history is not None:
            return as_history(history)
        if user is None:
            return []
        if self.train is None:
            raise ConfigError("build() got a user but no history, and the builder has no 'train' dataset to read "
                              "the history from")
        return user_history(self.train, user)

    def _check_inputs(self, candidates: tuple[str, ...], target: str | None) -> None:
        if self.task in RANKING_TASKS and not candidates:
            raise PromptError(f"task {self.task} needs candidates to rank")
        if len(set(candidates)) != len(candidates):
            raise PromptError("candidates hold the same item twice")
        if self.task in TARGET_TASKS and target is None:
            raise PromptError(f"task {self.task} needs the target item")
        if target is not None:
            self.catalog[target]  # raises UnknownIdError naming the id
        for item in candidates:
            self.catalog[item]

    def _demonstrations(self, user: object | None, entries: list[HistoryEntry]) -> list[Demonstration]:
        if self.few_shot is None or self.n_shots == 0:
            return []
        demos = self.few_shot.select(self.n_shots, user=user, history=[e.item for e in entries])
        if self.task == "rating" and any(demo.next.rating is None for demo in demos):
            raise PromptError("few-shot rating prompts need ratings, and the training dataset has none")
        return demos

    def _labels(self, candidates: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        space = " " if self.template.answer_prefix else ""
        source = self.llm if self.llm is not None else self.counter
        if self.task == "rank-verbalizer":
            n = len(candidates)
            if n not in self._label_cache:  # checked with the tokenizer once per number of candidates
                self._label_cache[n] = verbalizer_labels(n, source, style=self.label_style, leading_space=bool(space))
            labels = self._label_cache[n]
            return labels, tuple(space + label for label in labels)
        if self.task == "rating":
            choices = tuple(space + str(v) for v in range(self.scale[0], self.scale[1] + 1))
            if source is not None:
                check_single_tokens(choices, source)
            return (), choices
        if candidates:
            return tuple(str(i) for i in range(1, len(candidates) + 1)), ()
        return (), ()

    def _common_fields(self, candidates: tuple[str, ...], labels: tuple[str, ...], target: str | None,
                       k: int | None) -> dict[str, Any]:
        return {
            "noun": self.noun, "nouns": self.nouns, "n_candidates": len(candidates),
            "k": k if k is not None else (len(candidates) or 1),
            "first_label": labels[0] if labels else "", "last_label": labels[-1] if labels else "",
            "labels": ", ".join(labels), "scale_min": self.scale[0], "scale_max": self.scale[1],
            "target_title": self.catalog[target].label() if target is not None else "",
            "order": self.order.replace("-", " "),
        }

    def _reserve(self, candidates: tuple[str, ...], continuations: tuple[str, ...]) -> int:
        if self.reserve is not None:
            return self.reserve
        reserve = self.template.answer_tokens + self.template.answer_tokens_per_candidate * len(candidates)
        if continuations:
            reserve += max(self._piece(c) for c in continuations)
        return reserve

    # ---- rendering ------------------------------------------------------------------------------------
    def _item_lines(self, entries: Sequence[HistoryEntry], fields: Mapping[str, Any]) -> list[str]:
        shown = list(entries) if self.order == "oldest-first" else list(reversed(entries))
        part, rating_part = self.template.part("item_line"), self.template.part("rating")
        lines = []
        for number, entry in enumerate(shown, start=1):
            rating = rating_part.format(**fields, value=entry.rating) \
                if entry.rating is not None and rating_part else ""
            lines.append(part.format(**fields, number=number, id=entry.item, title=self.catalog[entry.item].label(),
                                     facts=self.catalog.describe(entry.item), rating=rating))
        return lines

    def _draft(self, entries: Sequence[HistoryEntry], demos: Sequence[Demonstration], candidates: tuple[str, ...],
               labels: tuple[str, ...], target: str | None, common: Mapping[str, Any]) -> _Draft:
        t = self.template
        fields = {**common, "n_history": len(entries)}
        sections = [t.part("task").format(**fields)]
        if self.persona is not None:
            sections.append((t.part("persona") or DEFAULT_PERSONA_PART).format(**fields, persona=self.persona))
        if demos:
            shown = [self._demonstration(number, demo, fields) for number, demo in enumerate(demos, start=1)]
            sections.append("\n\n".join([t.part("demonstrations_header").format(**fields), *shown]))
        if entries:
            sections.append("\n".join([t.part("history_header").format(**fields), *self._item_lines(entries, fields)]))
        else:
            sections.append(t.part("empty_history").format(**fields))
        if target is not None and t.has("target"):
            item = self.catalog[target]
            sections.append(t.part("target").format(**fields, id=target, title=item.label(),
                                                    facts=self.catalog.describe(target)))
        if candidates and t.has("candidate_line"):
            lines = [t.part("candidate_line").format(**fields, label=label, number=number, id=item,
                                                     title=self.catalog[item].label(),
                                                     facts=self.catalog.describe(item))
                     + self._evidence_text(item, entries, fields)
                     for number, (item, label) in enumerate(zip(candidates, labels or candidates, strict=True),
                                                            start=1)]
            sections.append("\n".join([t.part("candidates_header").format(**fields), *lines]))
        sections.append(t.part("reasoning").format(**fields))
        sections.append(t.output_formats[self.output].format(**fields))
        user_text = "\n\n".join(s.strip("\n") for s in sections if s.strip())
        system = t.part("system").format(**fields).strip()
        messages: tuple[Mapping[str, str], ...] = (
            ({"role": "system", "content": system},) if system else ()) + ({"role": "user", "content": user_text},)
        prefix = t.answer_prefix.format(**fields)
        text = "\n\n".join(s for s in (system, user_text) if s) + "\n\n" + prefix
        shown_history = tuple(e.item for e in (entries if self.order == "oldest-first" else reversed(entries)))
        return _Draft(messages=messages, text=text, answer_prefix=prefix, history=shown_history,
                      demonstrations=tuple(demos), tokens=self.count(messages, text, prefix))

    def _evidence_text(self, item: str, entries: Sequence[HistoryEntry], fields: Mapping[str, Any]) -> str:
        """The shown history items closest to candidate ``item``, as the template words them ("" for none)."""
        if self.evidence is None:
            return ""
        closest = self.evidence.closest(item, [e.item for e in entries])
        if not closest:
            return ""
        part = self.template.part("candidate_evidence") or DEFAULT_EVIDENCE_PART
        return part.format(**fields, titles="; ".join(self.catalog[c].label() for c in closest))

    def _demonstration(self, number: int, demo: Demonstration, fields: Mapping[str, Any]) -> str:
        nxt = demo.next
        next_rating = "?" if nxt.rating is None else format(nxt.rating, "g")
        return self.template.part("demonstration").format(
            **fields, number=number, history="\n".join(self._item_lines(demo.history, fields)),
            next_id=nxt.item, next_title=self.catalog[nxt.item].label(), next_facts=self.catalog.describe(nxt.item),
            next_rating=next_rating)

    # ---- budgeting ------------------------------------------------------------------------------------
    def _fit(self, n_history: int, n_demos: int, reserve: int,
             draft: Callable[[int, int], _Draft]) -> tuple[int, int]:
        """(history items, demonstrations) to keep: as many as fit, dropping oldest history first, then
        demonstrations (least similar first), then history below ``min_history``."""
        budget = self.max_tokens
        if budget is None:
            return n_history, n_demos

        def fits(h: int, d: int) -> bool:
            return draft(h, d).tokens + reserve <= budget

        if fits(n_history, n_demos):
            return n_history, n_demos
        floor = min(self.min_history, n_history)
        if fits(floor, n_demos):
            return _largest(floor, n_history, lambda h: fits(h, n_demos)), n_demos
        if n_demos and fits(floor, 0):
            d = _largest(0, n_demos, lambda d: fits(floor, d))
            return _largest(floor, n_history, lambda h: fits(h, d)), d
        low = min(1, n_history)
        if fits(low, 0):
            return _largest(low, floor, lambda h: fits(h, 0)), 0
        need = draft(low, 0).tokens
        raise PromptError(f"{self.template.name} prompt needs {need} tokens with {low} history item(s) and no "
                          f"demonstrations, plus {reserve} reserved for the answer: more than the budget of "
                          f"{budget}. The task description, candidates and output format are never cut; use "
                          f"fewer candidates or a larger budget")


def _largest(low: int, high: int, ok: Callable[[int], bool]) -> int:
    """The largest x in [low, high] with ok(x), given ok(low) holds and ok is monotone (true then false)."""
    while low < high:
        middle = (low + high + 1) // 2
        if ok(middle):
            low = middle
        else:
            high = middle - 1
    return low
