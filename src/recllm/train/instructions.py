"""Instruction data for tuning a language model on recommendation (P5-style multi-task text-to-text, TALLRec).

Every example is a prompt built by the same ``PromptBuilder`` templates the re-rankers and tasks use at
inference, followed by the answer the model should give there, so tuning a task improves exactly the call that
reads it:

- ``next``: the ``rank-likelihood`` prompt (ends "Next movie:") -> " Title (Year)" of the next item, as the
  LikelihoodReranker scores it; or (``next_prompt="generate"``) the ``next-item`` prompt -> "Title (Year)",
  as ZeroShotNextItem reads it.
- ``rank``: the ``rank-verbalizer`` prompt, the next item among negatives (shuffled) -> its label, as the
  VerbalizerReranker reads it. Negatives are drawn at random from the catalog, or (``negatives="retriever"``,
  LlamaRec's hard negatives) are a retriever's own top items for the history before the target: the
  candidates the re-ranker meets at inference, which random items are far easier to tell apart from.
- ``rate``: the ``rating`` prompt plus the cue "Rating:" -> the rating digit, as RatingPredictor reads it.
- ``explain``: the ``explain`` prompt -> genres and era the item shares with history items (catalog facts,
  ``template_explanation``), as the Explainer is asked.
- ``yesno`` (TALLRec): a ``rating``-task template asking "will the user like it?" -> "Yes" if the rating is
  at least ``like_threshold``, else "No" (scored by ``recllm.train.tallrec``).

Leakage: examples come from the training interactions only. Each target is a training interaction of a
user and its history the user's training interactions before it (sliding windows over the train sequence),
so no validation or test interaction is ever a target, a history item or a rating shown. Negatives of the
``rank`` task are drawn from items outside the user's training history, without looking at held-out data
(so a user's test item may be a negative; that can only hurt, never flatter, test figures). A retriever for
hard negatives must have been fitted on exactly the training part (``Recommender.fitted_on``, checked), and it
scores the history before the target as an ad-hoc user, so neither held-out interactions nor the user's later
training items reach a negative through it.

Item naming: ``title`` (the catalog's titles), ``random-id`` (a seeded random permutation of the items mapped
to ``item_1 .. item_N``: sequential ids would let a model read the answer off the numbering, as critiques of
P5 showed) or ``semantic`` (token strings of semantic IDs, e.g. ``<a_12><b_3><c_7><d_0>``). Prompts with ids
are built from a catalog whose titles are those names (``InstructionSet.catalog``); pass that catalog to the
re-rankers at inference.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recllm.config import build
from recllm.data.catalog import ItemCatalog
from recllm.data.dataset import Dataset
from recllm.data.splits import Split
from recllm.errors import ConfigError, RecllmError
from recllm.llm.base import LLM
from recllm.models.base import Recommender
from recllm.prompts import HistoryEntry, Prompt, PromptBuilder, Template, parse_template
from recllm.prompts.naming import named_catalog
from recllm.tasks.explain import template_explanation

log = logging.getLogger(__name__)

TASKS = ("next", "rank", "rate", "explain", "yesno")
NAMINGS = ("title", "random-id", "semantic")
RATED_TASKS = frozenset({"rate", "yesno"})
class _TokenStrings(Protocol):
    def token_strings(self, item: str) -> str: ...


SemanticNames = Mapping[str, str] | Callable[[str], str] | _TokenStrings
"""Item id -> token string: a mapping, a callable, or an object with ``token_strings(item)`` (SemanticIds)."""


class InstructionConfig(BaseModel):
    """What instruction data to build; every field is described in ``build_instructions``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: tuple[str, ...] = ("next", "rank", "rate")
    naming: str = "title"
    seed: int = 0
    max_examples_per_task: int | None = Field(default=None, ge=1)
    min_history: int = Field(default=1, ge=1)
    max_history: int | None = Field(default=20, ge=1)
    n_candidates: int = Field(default=10, ge=2)
    negatives: Literal["random", "retriever"] = "random"
    label_style: str = "letters"
    like_threshold: float = 4.0
    scale: tuple[int, int] = (1, 5)
    rating_cue: str = "Rating:"
    next_prompt: Literal["likelihood", "generate"] = "likelihood"
    explain_liked_only: bool = True
    id_facts: bool = False
    yes: str = "Yes"
    no: str = "No"
    prompt_options: dict[str, Any] = Field(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ConfigError(f"unknown instruction task '{unknown[0]}'; tasks: {', '.join(TASKS)}")
        if not self.tasks:
            raise ConfigError(f"no instruction task given; tasks: {', '.join(TASKS)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"instruction tasks repeat a task: {', '.join(self.tasks)}")
        if self.naming not in NAMINGS:
            raise ConfigError(f"unknown item naming '{self.naming}'; namings: {', '.join(NAMINGS)}")
        if self.scale[0] >= self.scale[1]:
            raise ConfigError(f"rating scale must be (low, high) with low < high, got {self.scale}")
        if not self.yes.strip() or not self.no.strip() or self.yes == self.no:
            raise ConfigError(f"yes/no answers must be two different non-empty words, got {self.yes!r}, {self.no!r}")
        reserved = {"catalog", "task", "variant", "llm", "train", "label_style", "max_history", "scale"}
        clash = sorted(reserved & set(self.prompt_options))
        if clash:
            raise ConfigError(f"prompt_options may not set '{clash[0]}': it is set by the instruction builder "
                              f"(use the field of the same name, if any)")


@dataclass(frozen=True)
class Example:
    """One instruction example: the ``prompt`` the model reads (plus ``cue``, text after the rendered prompt),
    and the ``target`` text it should continue with.

    ``user`` is the external user id, ``item`` the item the answer is about (the next, positive, rated or
    explained item), ``label`` 1/0 for yes/no examples. ``render(llm)`` is the exact text the model reads,
    as the re-rankers and tasks render it; the target follows it directly (labels and digits carry no
    leading space, titles after "Next movie:" do).
    """

    task: str
    prompt: Prompt
    target: str
    user: str
    item: str | None = None
    cue: str = ""
    label: int | None = None

    def render(self, llm: LLM | None = None) -> str:
        """The prompt text as ``llm`` reads it (its chat template), then the cue; flat text without an LLM."""
        return self.prompt.render(llm) + self.cue

    @property
    def history(self) -> tuple[str, ...]:
        """Item ids of the history shown in the prompt, in shown order."""
        return self.prompt.history

    @property
    def candidates(self) -> tuple[str, ...]:
        """Item ids of the candidates shown (``rank``), or the scored title (``next``)."""
        return self.prompt.candidates

    def to_dict(self, llm: LLM | None = None) -> dict[str, Any]:
        """A JSON-ready record (chat messages, rendered prompt, target) for export or inspection."""
        return {"task": self.task, "user": self.user, "item": self.item, "label": self.label,
                "messages": [dict(m) for m in self.prompt.messages], "answer_prefix": self.prompt.answer_prefix,
                "cue": self.cue, "prompt": self.render(llm), "target": self.target}


@dataclass(frozen=True)
class InstructionSet:
    """Examples with the catalog their prompts name items from, the item names, and what was built.

    ``catalog`` is the catalog to give the re-rankers at inference (titles replaced by ids unless ``naming``
    is ``title``); ``names`` maps item id -> name (None for titles); ``counts`` and ``skipped`` are per task.
    """

    examples: tuple[Example, ...]
    catalog: ItemCatalog
    names: Mapping[str, str] | None
    config: InstructionConfig
    counts: Mapping[str, int] = field(default_factory=dict)
    skipped: Mapping[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def by_task(self, task: str) -> list[Example]:
        """The examples of one task, in order."""
        return [e for e in self.examples if e.task == task]

    def describe(self) -> dict[str, Any]:
        """What was built, for the training record: config, counts per task, skipped positions."""
        return {"config": self.config.model_dump(mode="json"), "counts": dict(self.counts),
                "skipped": dict(self.skipped), "n_examples": len(self.examples)}


# ---- item naming --------------------------------------------------------------------------------------
def random_id_names(catalog: ItemCatalog, seed: int = 0, *, prefix: str = "item_") -> dict[str, str]:
    """Item id -> ``item_<n>``, n a seeded random permutation of 1..N over the catalog (never its order)."""
    ids = catalog.ids
    numbers = np.random.default_rng(seed).permutation(len(ids)) + 1
    return {item: f"{prefix}{int(n)}" for item, n in zip(ids, numbers, strict=True)}


def semantic_names(catalog: ItemCatalog, semantic: SemanticNames) -> dict[str, str]:
    """Item id -> semantic token string for every catalog item the mapping covers (others are left out)."""
    lookup = getattr(semantic, "token_strings", None)
    get: Callable[[str], str | None]
    if callable(lookup):
        get = _tolerant(lookup)
    elif isinstance(semantic, Mapping):
        get = semantic.get
    elif callable(semantic):
        get = _tolerant(semantic)
    else:
        raise ConfigError(f"semantic ids must be a mapping item -> tokens, a callable or SemanticIds, got "
                          f"{type(semantic).__name__}")
    names = {}
    for item in catalog.ids:
        name = get(item)
        if name is not None:
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"semantic id of item '{item}' must be a non-empty string, got {name!r}")
            names[item] = name
    if not names:
        raise ConfigError("semantic ids cover none of the catalog's items")
    return names


def _tolerant(function: Callable[[str], str]) -> Callable[[str], str | None]:
    def get(item: str) -> str | None:
        try:
            return function(item)
        except (KeyError, RecllmError):  # an item without a code (ConfigError, UnknownIdError)
            return None
    return get


def item_names(catalog: ItemCatalog, naming: str, *, seed: int = 0,
               semantic: SemanticNames | None = None) -> dict[str, str] | None:
    """Item names for ``naming``: None for titles, a random-id permutation, or semantic token strings."""
    if naming == "title":
        return None
    if naming == "random-id":
        return random_id_names(catalog, seed)
    if naming == "semantic":
        if semantic is None:
            raise ConfigError("naming 'semantic' needs semantic ids (item id -> token string, or SemanticIds)")
        return semantic_names(catalog, semantic)
    raise ConfigError(f"unknown item naming '{naming}'; namings: {', '.join(NAMINGS)}")


# ---- sequences ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Sequence:
    """One user's interactions in time order: external item ids and ratings (None without ratings)."""

    user: str
    items: tuple[str, ...]
    ratings: tuple[float, ...] | None

    def entries(self, stop: int) -> list[HistoryEntry]:
        if self.ratings is None:
            return [HistoryEntry(i) for i in self.items[:stop]]
        return [HistoryEntry(i, r) for i, r in zip(self.items[:stop], self.ratings[:stop], strict=True)]


def _sequences(dataset: Dataset) -> list[_Sequence]:
    ids = np.asarray(dataset.item_vocab.ids, dtype=object)
    out = []
    indptr = dataset.sequence_indptr
    for u in dataset.active_users:
        rows = dataset.time_order[indptr[u]:indptr[u + 1]]
        ratings = None if dataset.ratings is None else tuple(float(r) for r in dataset.ratings[rows])
        out.append(_Sequence(str(dataset.user_vocab.ids[u]), tuple(str(i) for i in ids[dataset.items[rows]]),
                             ratings))
    return out


# ---- the builder ----------------------------------------------------------------------------------------
def yes_no_template(threshold: float, *, yes: str = "Yes", no: str = "No") -> Template:
    """The TALLRec question as a ``rating``-task template: the rated history, the target, "Yes or No?".

    The history shows each rating and the task states the threshold, so liked and disliked items are told
    apart as TALLRec's two lists do.
    """
    escaped = format(threshold, "g")
    return parse_template({
        "template": {"task": "rating", "variant": "zero-shot", "answer_tokens": 1,
                     "description": f"TALLRec: will the user like the item ({yes}/{no})?"},
        "parts": {
            "system": "You are a {noun} recommender. You judge whether a user will like a {noun} from the ratings "
                      "they gave before.",
            "task": f"A rating of {escaped} or more (of {{scale_max}}) means the user liked the {{noun}}; a lower "
                    f"rating means they did not. Will this user like the {{noun}} below?",
            "history_header": "The {nouns} this user rated, {order}:",
            "item_line": "{number}. {facts}{rating}",
            "rating": " (rated {value:g} of {scale_max})",
            "empty_history": "Nothing is known about this user yet.",
            "target": "The {noun} in question: {facts}",
            "output_format": f"Answer with {yes} or {no} and nothing else.",
        },
    }, source=f"<yes/no template, threshold {escaped}>")


class _Builders:
    """One ``PromptBuilder`` per task, configured as the inference components configure theirs."""

    def __init__(self, catalog: ItemCatalog, config: InstructionConfig, llm: LLM | None) -> None:
        common: dict[str, Any] = {"llm": llm, "max_history": config.max_history, **config.prompt_options}
        self.builders: dict[str, PromptBuilder] = {}
        for task in config.tasks:
            if task == "next":
                name = "rank-likelihood" if config.next_prompt == "likelihood" else "next-item"
                self.builders[task] = PromptBuilder(catalog, name, **common)
            elif task == "rank":
                self.builders[task] = PromptBuilder(catalog, "rank-verbalizer", label_style=config.label_style,
                                                    **common)
            elif task == "rate":
                self.builders[task] = PromptBuilder(catalog, "rating", scale=config.scale, **common)
            elif task == "explain":
                self.builders[task] = PromptBuilder(catalog, "explain", **common)
            else:
                template = yes_no_template(config.like_threshold, yes=config.yes, no=config.no)
                options = {k: v for k, v in common.items() if k != "template"}  # yes/no has its own template
                self.builders[task] = PromptBuilder(catalog, "rating", template=template, scale=config.scale,
                                                    **options)

    def __getitem__(self, task: str) -> PromptBuilder:
        return self.builders[task]


class _Maker:
    """Turns (user sequence, position) into one example of a task, or None when the position does not fit."""

    def __init__(self, catalog: ItemCatalog, source: ItemCatalog, config: InstructionConfig, llm: LLM | None,
                 names: Mapping[str, str] | None, retriever: Recommender | None = None) -> None:
        self.catalog = catalog
        self.config = config
        self.builders = _Builders(catalog, config, llm)
        self.pool = np.asarray(catalog.ids, dtype=object)  # negatives: any named catalog item
        self.retriever = retriever
        if retriever is not None:  # items a retriever may offer as negatives: those the prompts can name
            assert retriever.item_vocab is not None
            self.nameable = np.array([i in catalog for i in retriever.item_vocab.ids], dtype=bool)
            self.item_ids = np.asarray(retriever.item_vocab.ids, dtype=str)
        # explanations cite facts: the named catalog when it has them, else names with the source's facts
        self.explain_catalog = catalog if names is None or config.id_facts else named_catalog(source, names,
                                                                                               facts=True)

    def make(self, task: str, seq: _Sequence, t: int, rng: np.random.Generator) -> Example | None:
        """The example of ``task`` whose target is ``seq.items[t]`` and history ``seq.items[:t]``."""
        item = seq.items[t]
        ids = list(seq.items[:t])
        builder = self.builders[task]
        if task == "next":
            if self.config.next_prompt == "likelihood":
                prompt = builder.build(ids, candidates=(item,))
                return Example(task, prompt, prompt.continuations[0], seq.user, item)
            prompt = builder.build(ids)
            return Example(task, prompt, self.catalog[item].label(), seq.user, item)
        if task == "rank":
            candidates = (self._hard_candidates(seq, t, rng) if self.retriever is not None
                          else self._candidates(seq, item, rng))
            if candidates is None:
                return None
            prompt = builder.build(ids, candidates=candidates)
            return Example(task, prompt, prompt.choices[candidates.index(item)], seq.user, item)
        if task == "explain":
            if self.config.explain_liked_only and seq.ratings is not None \
                    and seq.ratings[t] < self.config.like_threshold:
                return None
            prompt = builder.build(ids, target=item)
            if not _has_grounds(self.explain_catalog, prompt.history, item):
                return None
            return Example(task, prompt, template_explanation(self.explain_catalog, prompt.history, item),
                           seq.user, item)
        assert seq.ratings is not None  # checked before building: rate and yesno need ratings
        rating = seq.ratings[t]
        prompt = builder.build(seq.entries(t), target=item)
        if task == "rate":
            low, high = self.config.scale
            value = int(min(max(round(rating), low), high))
            return Example(task, prompt, str(value), seq.user, item, cue=self.config.rating_cue)
        liked = rating >= self.config.like_threshold
        return Example(task, prompt, self.config.yes if liked else self.config.no, seq.user, item,
                       label=int(liked))

    def _candidates(self, seq: _Sequence, item: str, rng: np.random.Generator) -> tuple[str, ...] | None:
        """``n_candidates - 1`` distinct negatives outside the user's training items, plus ``item``, shuffled."""
        n_neg = self.config.n_candidates - 1
        seen = set(seq.items)  # the user's own (training) items, the target among them, are never negatives
        negatives: list[str] = []
        for _ in range(4):  # rejection sampling: cheap when the catalog is much larger than a history
            for cand in self.pool[rng.integers(0, len(self.pool), size=2 * n_neg + 4)]:
                if cand not in seen and cand not in negatives:
                    negatives.append(str(cand))
                    if len(negatives) == n_neg:
                        break
            if len(negatives) == n_neg:
                break
        else:  # a small catalog: draw from the exact complement
            rest = [str(c) for c in self.pool if c not in seen]
            if len(rest) < n_neg:
                return None
            negatives = [rest[int(i)] for i in rng.choice(len(rest), size=n_neg, replace=False)]
        candidates = [*negatives, item]
        rng.shuffle(candidates)
        return tuple(candidates)


    def _hard_candidates(self, seq: _Sequence, t: int, rng: np.random.Generator) -> tuple[str, ...] | None:
        """The retriever's top ``n_candidates - 1`` items for the history before position ``t`` (scored as an
        ad-hoc user), outside the user's training items, plus the target, shuffled."""
        retriever = self.retriever
        assert retriever is not None and retriever.item_vocab is not None
        vocab = retriever.item_vocab
        n_neg = self.config.n_candidates - 1
        history = vocab.indices(seq.items[:t])
        scores = np.asarray(retriever.score(np.array([-1]), [history])[0], dtype=np.float64)
        allowed = self.nameable.copy()
        allowed[vocab.indices(seq.items)] = False  # the user's own training items, the target among them
        if allowed.sum() < n_neg:
            return None
        pool = np.flatnonzero(allowed)
        ranked = pool[np.lexsort((self.item_ids[pool], -scores[pool]))]  # ties by item id, not vocabulary order
        candidates = [*vocab.lookup_ids(ranked[:n_neg]), seq.items[t]]
        rng.shuffle(candidates)
        return tuple(candidates)


def _has_grounds(catalog: ItemCatalog, history: Sequence[str], item: str, era: int = 5) -> bool:
    """Whether a history item shares a genre with ``item`` or comes from within ``era`` years of it."""
    target = catalog[item]
    genres = set(target.genres)
    for h in history:
        if h == item or h not in catalog:
            continue
        other = catalog[h]
        if genres & set(other.genres):
            return True
        if target.year is not None and other.year is not None and abs(other.year - target.year) <= era:
            return True
    return False


def _train_part(data: Split | Dataset) -> Dataset:
    if isinstance(data, Split):
        return data.train
    if isinstance(data, Dataset):
        return data
    raise ConfigError(f"instruction data needs a Split or a (training) Dataset, got {type(data).__name__}")


def _config(config: InstructionConfig | Mapping[str, Any] | None, options: Mapping[str, Any]) -> InstructionConfig:
    if isinstance(config, InstructionConfig):
        values = {**config.model_dump(), **options} if options else None
        return build(InstructionConfig, values, where="instruction config") if values else config
    return build(InstructionConfig, {**dict(config or {}), **options}, where="instruction config")


def _prepare(dataset: Dataset, catalog: ItemCatalog, config: InstructionConfig,
             semantic: SemanticNames | None) -> tuple[ItemCatalog, dict[str, str] | None]:
    if RATED_TASKS & set(config.tasks) and dataset.ratings is None:
        needing = sorted(RATED_TASKS & set(config.tasks))
        raise ConfigError(f"instruction task(s) {', '.join(needing)} need ratings, and {dataset.name} has none")
    names = item_names(catalog, config.naming, seed=config.seed, semantic=semantic)
    prompts_catalog = named_catalog(catalog, names, facts=config.id_facts)
    used = np.unique(dataset.items)
    missing = [str(i) for i in np.asarray(dataset.item_vocab.ids, dtype=object)[used] if str(i) not in prompts_catalog]
    if missing:
        what = "have no semantic id" if config.naming == "semantic" else "are not in the catalog"
        raise ConfigError(f"{len(missing)} items of {dataset.name} {what}, e.g. '{missing[0]}'")
    return prompts_catalog, names


def build_instructions(
    data: Split | Dataset,
    catalog: ItemCatalog,
    config: InstructionConfig | Mapping[str, Any] | None = None,
    *,
    semantic_ids: SemanticNames | None = None,
    llm: LLM | None = None,
    retriever: Recommender | None = None,
    **options: Any,
) -> InstructionSet:
    """Instruction examples from the training interactions of ``data`` (a Split's ``train``, or a Dataset that
    holds training interactions only).

    Options (``InstructionConfig`` fields, given as ``config`` or keywords):
    - ``tasks``: any of next, rank, rate, explain, yesno (default next, rank, rate).
    - ``naming``: title, random-id or semantic (then ``semantic_ids`` gives item -> token string).
    - ``seed``: sampling of positions, negatives, candidate order and the random-id permutation.
    - ``max_examples_per_task``: a seeded random sample of that many positions per task (None: all).
    - ``min_history``: items before the target at least; ``max_history``: newest items shown (as
      ``PromptBuilder``, default 20: use the same value at inference).
    - ``n_candidates`` (rank): the true next item among ``n_candidates - 1`` negatives; ``negatives``:
      "random" (drawn from the catalog) or "retriever" (``retriever``'s top items for the history before the
      target: hard negatives; the retriever must be fitted on the training part only); ``label_style``:
      verbalizer labels.
    - ``like_threshold`` (yesno; explain with ``explain_liked_only``): ratings at or above it are "liked".
    - ``scale``, ``rating_cue`` (rate): as ``RatingPredictor`` (its default cue "Rating:").
    - ``next_prompt``: "likelihood" (the rank-likelihood prompt, target " Title (Year)") or "generate"
      (the next-item prompt, target "Title (Year)").
    - ``id_facts``: with id naming, keep each item's year and genres beside its id.
    - ``yes``/``no``: the yes/no answers (single tokens for the model).
    - ``prompt_options``: further ``PromptBuilder`` options (order, noun, nouns, max_tokens, ...).

    ``llm`` lets the builders count tokens and check labels with the model's tokenizer, exactly as the
    re-rankers do; without it the prompts are the same unless a token budget would have trimmed them.
    """
    cfg = _config(config, options)
    dataset = _train_part(data)
    prompts_catalog, names = _prepare(dataset, catalog, cfg, semantic_ids)
    maker = _Maker(prompts_catalog, catalog, cfg, llm, names, _checked_retriever(retriever, cfg, dataset))
    sequences = _sequences(dataset)
    lengths = np.array([len(s.items) for s in sequences], dtype=np.int64)
    spans = np.maximum(lengths - cfg.min_history, 0)
    owner = np.repeat(np.arange(len(sequences)), spans)
    position = np.concatenate([np.arange(cfg.min_history, n) for n in lengths]) if len(lengths) else np.zeros(0)
    position = position.astype(np.int64)
    examples: list[Example] = []
    counts: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for number, task in enumerate(cfg.tasks):
        rng = np.random.default_rng([cfg.seed, number])
        order = rng.permutation(len(owner)) if cfg.max_examples_per_task is not None else np.arange(len(owner))
        limit = cfg.max_examples_per_task or len(owner)
        made: list[Example] = []
        misses = 0
        for index in order:
            example = maker.make(task, sequences[owner[index]], int(position[index]), rng)
            if example is None:
                misses += 1
                continue
            made.append(example)
            if len(made) >= limit:
                break
        counts[task], skipped[task] = len(made), misses
        if misses:
            log.info("instructions: %d positions gave no %s example (%s)", misses, task, _why(task))
        if not made:
            log.warning("instructions: no %s example could be built from %s", task, dataset.name)
        examples.extend(made)
    log.info("instructions from %s (%s naming): %s", dataset.name, cfg.naming,
             ", ".join(f"{t} {n}" for t, n in counts.items()))
    return InstructionSet(tuple(examples), prompts_catalog, names, cfg, counts, skipped)


def _checked_retriever(retriever: Recommender | None, config: InstructionConfig,
                       train: Dataset) -> Recommender | None:
    """The retriever for hard negatives, checked to be wanted, fitted, and fitted on ``train`` exactly."""
    if config.negatives == "random":
        if retriever is not None:
            raise ConfigError("a retriever was given for instruction data with negatives='random': pass "
                              "negatives='retriever' to draw hard negatives from it, or no retriever")
        return None
    if retriever is None:
        raise ConfigError("negatives='retriever' needs a retriever fitted on the training part (retriever=...)")
    if not retriever.fitted_on(train):
        raise ConfigError(f"the retriever for hard negatives ({retriever.name}) was not fitted on exactly the "
                          f"training part of {train.name}: a model that saw validation or test interactions would "
                          "leak them into the tuning data; fit it on split.train")
    return retriever


def _why(task: str) -> str:
    return {"explain": "target not liked, or no genre or era shared with the history",
            "rank": "too few items outside the user's history for negatives"}.get(task, "not applicable")


def build_heldout_examples(
    split: Split,
    catalog: ItemCatalog,
    config: InstructionConfig | Mapping[str, Any] | None = None,
    *,
    part: Literal["valid", "test"] = "test",
    semantic_ids: SemanticNames | None = None,
    llm: LLM | None = None,
    retriever: Recommender | None = None,
    **options: Any,
) -> InstructionSet:
    """Evaluation examples: each user's held-out ``part`` interaction as the target, with everything before
    it (train, plus validation for ``test``) as history. Never train on these; they are for measuring
    (e.g. TALLRec AUC on ``yesno``). ``max_examples_per_task`` samples users (seeded). Hard negatives
    (``negatives="retriever"``) come from a retriever fitted on ``split.train``, as at inference."""
    cfg = _config(config, options)
    heldout = split.test if part == "test" else split.valid if part == "valid" else None
    if heldout is None:
        raise ConfigError(f"held-out part must be 'valid' or 'test', got {part!r}")
    seen = split.test_history() if part == "test" else split.train
    prompts_catalog, names = _prepare(seen, catalog, cfg, semantic_ids)
    _prepare(heldout, catalog, cfg, semantic_ids)
    maker = _Maker(prompts_catalog, catalog, cfg, llm, names, _checked_retriever(retriever, cfg, split.train))
    before = {s.user: s for s in _sequences(seen)}
    targets = _sequences(heldout)
    examples: list[Example] = []
    counts: dict[str, int] = {}
    skipped: dict[str, int] = {}
    for number, task in enumerate(cfg.tasks):
        rng = np.random.default_rng([cfg.seed, number, 1])
        order = rng.permutation(len(targets)) if cfg.max_examples_per_task is not None else range(len(targets))
        made: list[Example] = []
        misses = 0
        for index in order:
            target = targets[int(index)]
            history = before.get(target.user, _Sequence(target.user, (), () if target.ratings is not None else None))
            joined = _Sequence(target.user, history.items + target.items[:1],
                               None if history.ratings is None or target.ratings is None
                               else history.ratings + target.ratings[:1])
            example = maker.make(task, joined, len(history.items), rng) \
                if len(history.items) >= cfg.min_history else None
            if example is None:
                misses += 1
                continue
            made.append(example)
            if cfg.max_examples_per_task is not None and len(made) >= cfg.max_examples_per_task:
                break
        counts[task], skipped[task] = len(made), misses
        examples.extend(made)
    return InstructionSet(tuple(examples), prompts_catalog, names, cfg, counts, skipped)
