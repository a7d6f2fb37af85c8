"""The result types of prompt building: the ``Prompt`` itself, its trimming report and a history entry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from recllm.errors import RecllmError
from recllm.llm.base import LLM, CapabilityError, GenerationRequest


class PromptError(RecllmError):
    """A prompt cannot be built as asked: it does not fit the token budget, or no single-token labels exist."""


@dataclass(frozen=True)
class HistoryEntry:
    """One item of a user's history, with the user's rating when the data has ratings."""

    item: str
    rating: float | None = None


HistoryLike = Sequence[str | HistoryEntry | tuple[str, float | None]]
"""A user's history as prompts and tasks take it: item ids, ``(id, rating)`` pairs or entries, oldest first."""

@dataclass(frozen=True)
class TrimReport:
    """What fitting a prompt to its token budget removed: history items (oldest first), then demonstrations.

    ``max_tokens`` is None when no budget applied; ``reserve`` is the room kept for the answer or the longest
    continuation; ``tokens`` the prompt's own length.
    """

    history_total: int
    history_kept: int
    demonstrations_total: int
    demonstrations_kept: int
    tokens: int
    reserve: int
    max_tokens: int | None

    @property
    def history_dropped(self) -> int:
        """History items left out (budget, or ``max_history``)."""
        return self.history_total - self.history_kept

    @property
    def demonstrations_dropped(self) -> int:
        """Demonstrations left out to fit the budget."""
        return self.demonstrations_total - self.demonstrations_kept

    @property
    def trimmed(self) -> bool:
        """Whether anything was left out."""
        return self.history_dropped > 0 or self.demonstrations_dropped > 0

    def as_dict(self) -> dict[str, int | None]:
        """Every count, for logs and diagnostics."""
        return {"history_total": self.history_total, "history_kept": self.history_kept,
                "history_dropped": self.history_dropped, "demonstrations_total": self.demonstrations_total,
                "demonstrations_kept": self.demonstrations_kept,
                "demonstrations_dropped": self.demonstrations_dropped, "tokens": self.tokens,
                "reserve": self.reserve, "max_tokens": self.max_tokens}


@dataclass(frozen=True)
class Prompt:
    """A built prompt: chat ``messages`` (system, user), the same as flat ``text``, and what it shows.

    ``answer_prefix`` is text the answer starts with (for likelihood scoring the prompt ends there, right
    where a title begins). ``candidates`` are item ids in the order shown with ``labels`` beside them;
    ``choices`` are the strings to score as the very next token (verbalizer labels, rating digits), written
    exactly as they follow the prompt; ``continuations`` are the texts to score after the prompt for
    likelihood ranking (a leading space, then the title). ``history`` is the shown history, in shown order.
    """

    task: str
    variant: str
    messages: tuple[Mapping[str, str], ...]
    text: str
    answer_prefix: str = ""
    candidates: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    continuations: tuple[str, ...] = ()
    history: tuple[str, ...] = ()
    demonstration_users: tuple[str, ...] = ()
    target: str | None = None
    output: str = "default"
    n_tokens: int = 0
    counted_by: str = "estimate"
    trim: TrimReport | None = field(default=None)
    template: str = ""

    def render(self, llm: LLM | None = None) -> str:
        """The exact text the model reads: the chat rendered with ``llm``'s chat template, then the answer
        prefix; the flat ``text`` when there is no LLM or it cannot render chats."""
        if llm is None:
            return self.text
        try:
            return llm.render_chat([dict(m) for m in self.messages]) + self.answer_prefix
        except CapabilityError:
            return self.text

    def request(self, llm: LLM | None = None, **params: Any) -> GenerationRequest:
        """A generation request for this prompt: a chat request, or the rendered text when the answer has a
        prefix (a chat request cannot start the assistant's turn)."""
        if self.answer_prefix:
            return GenerationRequest.text(self.render(llm), **params)
        return GenerationRequest.chat([dict(m) for m in self.messages], **params)

    def label_of(self, item: str) -> str:
        """The label shown beside candidate ``item``."""
        return self.labels[self.candidates.index(str(item))]

    def item_of(self, label: str) -> str | None:
        """The candidate shown with ``label`` (surrounding spaces and case ignored), or None."""
        key = label.strip().upper()
        for cand, lab in zip(self.candidates, self.labels, strict=True):
            if lab.upper() == key:
                return cand
        return None
