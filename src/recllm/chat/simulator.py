"""A simulated user that measures the conversation: it has a hidden target item (a real user's held-out test
item), talks to the chat agent for up to ``turns`` turns and succeeds when the agent shows the target.

The simulated user opens from its own history (the titles it liked most recently), answers the agent's
question from the target's facts, and otherwise rejects what it was shown with a critique built from the
target: first a genre the target has, then its decade, then a genre the shown items have and the target lacks
("no Horror"), then a history title that shares the target's genres. It never writes the target's title or any
word of it (a leakage guard: every message is checked, and a history title that shares a word with the target
is never named). Phrasing is by rules; ``Paraphraser`` lets a language model rephrase each message, under the
same guard (a leaking paraphrase falls back to the rule's wording), to show robustness to phrasing.

Metrics follow InteRecAgent's evaluation: success within T turns (the target among the shown items) and the
average number of turns to success, a miss counting T + 1.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from recllm.chat.agent import ChatAgent
from recllm.chat.state import Preferences
from recllm.data.catalog import ItemCatalog, normalize_title
from recllm.errors import RecllmError

OPEN_TITLES = 3
"""History titles the opening message names (the most recent ones without words of the target's title)."""
_STOPWORD_TEXT = "the a an of and in on to for with at by from is it la le les el de der die das"
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())

Paraphraser = Callable[[str], str]
"""Rewrites one simulated message in other words (e.g. with a language model)."""


@dataclass(frozen=True)
class Dialogue:
    """One simulated conversation: the target, the messages and lists shown, and the turn it succeeded in."""

    user: str
    target: str
    messages: tuple[str, ...]
    shown: tuple[tuple[str, ...], ...]
    success_turn: int | None
    leaks: int = 0


@dataclass
class SimulationResult:
    """Per-dialogue outcomes and their summary."""

    dialogues: list[Dialogue] = field(default_factory=list)
    turns: int = 5

    def summary(self) -> dict[str, Any]:
        n = len(self.dialogues)
        if n == 0:
            raise RecllmError("no dialogues were simulated")
        hits = [d.success_turn for d in self.dialogues]
        by_turn = {t: sum(h is not None and h <= t for h in hits) / n for t in range(1, self.turns + 1)}
        average = sum(h if h is not None else self.turns + 1 for h in hits) / n
        return {"dialogues": n, "turns": self.turns, "success": by_turn[self.turns], "success_by_turn": by_turn,
                "average_turns": average, "leaks": sum(d.leaks for d in self.dialogues)}


def title_words(catalog: ItemCatalog, item: str) -> set[str]:
    """The content words of an item's title (what a simulated user must never write about its target)."""
    return {w for w in normalize_title(catalog[item].title).split() if w not in _STOPWORDS and len(w) > 1}


def leaks(message: str, catalog: ItemCatalog, target: str) -> bool:
    """Whether ``message`` writes a content word of the target's title (its title included)."""
    words = set(re.findall(r"[a-z0-9]+", normalize_title(message)))
    return bool(words & title_words(catalog, target))


class SimulatedUser:
    """One user with a hidden ``target`` and a ``history`` (item ids, oldest first); see the module docstring."""

    def __init__(self, catalog: ItemCatalog, history: Sequence[str], target: str, *,
                 paraphrase: Paraphraser | None = None, critique: bool = True) -> None:
        """``critique`` False: every reply is only "Something else." (a control that tells the agent nothing
        about the target, so the effect of showing more items is seen apart from the critiques)."""
        self.critique = critique
        self.catalog = catalog
        self.history = [h for h in history if h in catalog]
        self.target = target
        self.facts = catalog[target]
        self.paraphrase = paraphrase
        self.forbidden = title_words(catalog, target)
        self.said_genre: str | None = None
        self.said_era = False
        self.avoided: list[str] = []
        self.named: list[str] = []
        self.leaks = 0

    def _safe_titles(self, items: Sequence[str]) -> list[str]:
        return [i for i in items if i != self.target and not title_words(self.catalog, i) & self.forbidden]

    def _pick(self, *wordings: str) -> str:
        """The first wording that writes no word of the target's title ("" when every one would: the part is
        left out, as a person who must not say the title would leave it out)."""
        return next((w for w in wordings if not leaks(w, self.catalog, self.target)), "")

    def opening(self) -> str:
        recent = self._safe_titles(list(reversed(self.history)))[:OPEN_TITLES]
        self.named += recent
        ask = self._pick("What should I watch next?", "Any suggestions?", "Recommend me something.")
        if not recent:
            return self._say(ask or "Hi.")
        titles = [self.catalog[i].label() for i in recent]
        listed = ", ".join(titles[:-1]) + f" and {titles[-1]}" if len(titles) > 1 else titles[0]
        return self._say(f"{self._pick('I liked', 'I enjoyed', 'I loved')} {listed}. {ask}".strip())

    def reply(self, shown: Sequence[str], asked: bool) -> str:
        """The next message after the agent showed ``shown`` (or asked a question when ``asked``)."""
        other = self._pick("Something else.", "Show me others.", "Different ones.")
        parts = [] if asked or not shown else [other]  # what was shown is not shown again
        if self.critique:
            parts.append(self._critique(shown))
        return self._say(" ".join(p for p in parts if p) or other or "Hmm.")

    def _critique(self, shown: Sequence[str]) -> str:
        """One new fact about the target, in the order of the module docstring ("" when none is left)."""
        genre = self._target_genre()
        if self.said_genre is None and genre is not None:
            self.said_genre = genre
            said = self._pick(f"I'm in the mood for {genre}.", f"I want {genre}.")
            if said:
                return said
        if not self.said_era and self.facts.year is not None:
            self.said_era = True
            decade = f"{self.facts.year // 10 * 10 % 100:02d}s"
            said = self._pick(f"Something from the {decade}.", f"From the {decade}.")
            if said:
                return said
        avoid = self._genre_to_avoid(shown)
        if avoid is not None:
            self.avoided.append(avoid)
            said = self._pick(f"No {avoid}, please.", f"Nothing {avoid}.")
            if said:
                return said
        similar = self._similar_history()
        if similar is not None:
            self.named.append(similar)
            return self._pick(f"Something like {self.catalog[similar].label()}.",
                              f"More like {self.catalog[similar].label()}.")
        return ""

    def _target_genre(self) -> str | None:
        """The target's genre that its history holds least often, ties to the one rarest in the catalog (the
        most telling one)."""
        genres = [g for g in self.facts.genres if g.lower() != "unknown"]
        if not genres:
            return None
        counts = {g: sum(g in self.catalog[h].genres for h in self.history) for g in genres}
        rarity = {g: sum(g in item.genres for item in self.catalog) for g in genres}
        return min(genres, key=lambda g: (counts[g], rarity[g], genres.index(g)))

    def _genre_to_avoid(self, shown: Sequence[str]) -> str | None:
        counts: dict[str, int] = {}
        for item in shown:
            for genre in self.catalog[item].genres if item in self.catalog else ():
                if genre not in self.facts.genres and genre not in self.avoided and genre.lower() != "unknown":
                    counts[genre] = counts.get(genre, 0) + 1
        return max(counts, key=lambda g: (counts[g], g)) if counts else None

    def _similar_history(self) -> str | None:
        target = set(self.facts.genres)
        candidates = [h for h in self._safe_titles(list(reversed(self.history))) if h not in self.named]
        scored = sorted(candidates, key=lambda h: -len(target & set(self.catalog[h].genres)))
        return scored[0] if scored and target & set(self.catalog[scored[0]].genres) else None

    def _say(self, message: str) -> str:
        if leaks(message, self.catalog, self.target):  # the rules never should; this is the guard
            raise RecllmError(f"the simulated message {message!r} leaks the target's title")
        if self.paraphrase is None:
            return message
        rewritten = self.paraphrase(message).strip()
        if not rewritten or leaks(rewritten, self.catalog, self.target):
            self.leaks += bool(rewritten)
            return message
        return rewritten


def simulate(agent: ChatAgent, catalog: ItemCatalog, cases: Sequence[tuple[str, Sequence[str], str]], *,
             turns: int = 5, base_history: bool = True, paraphrase: Paraphraser | None = None,
             critique: bool = True) -> SimulationResult:
    """Talk to ``agent`` for each ``(user, history, target)``; ``base_history`` gives the agent the user's
    history (a known user), as the one-shot retriever it is compared with has; ``critique`` False is the
    control that only asks for something else."""
    if turns < 1:
        raise RecllmError(f"turns must be at least 1, got {turns}")
    result = SimulationResult(turns=turns)
    for user, history, target in cases:
        person = SimulatedUser(catalog, history, target, paraphrase=paraphrase, critique=critique)
        state = Preferences()
        message = person.opening()
        messages, shown, success = [message], [], None
        for turn in range(1, turns + 1):
            reply = agent.turn(state, message, base_history=list(history) if base_history else ())
            state = reply.state
            items = tuple(i.item for i in reply.items)
            shown.append(items)
            if target in items:
                success = turn
                break
            if turn < turns:
                message = person.reply(items, asked=reply.action != "recommend")
                messages.append(message)
        result.dialogues.append(Dialogue(user, target, tuple(messages), tuple(shown), success, person.leaks))
    return result
