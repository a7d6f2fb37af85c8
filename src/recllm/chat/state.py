"""The preference state of one conversation: what the user liked and disliked, genres wanted and avoided, a
year range, free-text wishes, and the last list shown (so "the second one" means something). It is plain
JSON (``to_dict``/``from_dict``) so it persists with the session."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Preferences:
    """Everything the user has said so far, already matched to the catalog (item ids, catalog genres); ``focus``
    is the item a question about "it" refers to, ``criteria`` the aspect weights the user stated."""

    liked: tuple[str, ...] = ()
    disliked: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    avoid_genres: tuple[str, ...] = ()
    year_min: int | None = None
    year_max: int | None = None
    wishes: tuple[str, ...] = ()
    shown: tuple[str, ...] = ()
    seen_before: tuple[str, ...] = ()
    focus: str | None = None
    criteria: dict[str, float] | None = None

    @property
    def has_signal(self) -> bool:
        """Whether there is enough to recommend from: a liked item, a wanted genre or a year range (free-text
        wishes count only where an embedder can match them; the agent decides that)."""
        return bool(self.liked or self.genres or self.year_min is not None or self.year_max is not None)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Preferences:
        raw = raw or {}
        known: dict[str, Any] = {f: tuple(raw[f]) if isinstance(raw[f], list) else raw[f]
                                 for f in cls.__dataclass_fields__ if f in raw}
        return cls(**known)

    def merge(self, update: PreferenceUpdate) -> Preferences:
        """The state after one message: additions appended (an item moves between liked and disliked when the
        user changes their mind), a genre wanted again leaves the avoided list and vice versa, years replaced."""
        liked = _add(tuple(i for i in self.liked if i not in update.disliked), update.liked)
        disliked = _add(tuple(i for i in self.disliked if i not in update.liked), update.disliked)
        genres = _add(tuple(g for g in self.genres if g not in update.avoid_genres), update.genres)
        avoid = _add(tuple(g for g in self.avoid_genres if g not in update.genres), update.avoid_genres)
        year_min = update.year_min if update.year_min is not None else self.year_min
        year_max = update.year_max if update.year_max is not None else self.year_max
        if update.clear_years:
            year_min, year_max = update.year_min, update.year_max
        return replace(self, liked=liked, disliked=disliked, genres=genres, avoid_genres=avoid, year_min=year_min,
                       year_max=year_max, wishes=_add(self.wishes, update.wishes))


@dataclass(frozen=True)
class PreferenceUpdate:
    """What one message adds; ``unknown_titles`` are titles the user named that the catalog does not hold,
    ``others`` whether the user asked for different items than those shown; ``source`` says who read the
    message (``rules``, ``llm+rules``)."""

    liked: tuple[str, ...] = ()
    disliked: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    avoid_genres: tuple[str, ...] = ()
    year_min: int | None = None
    year_max: int | None = None
    clear_years: bool = False
    wishes: tuple[str, ...] = ()
    unknown_titles: tuple[str, ...] = ()
    others: bool = False
    source: str = "rules"
    notes: tuple[str, ...] = field(default=())

    @property
    def is_empty(self) -> bool:
        return not (self.liked or self.disliked or self.genres or self.avoid_genres or self.year_min is not None
                    or self.year_max is not None or self.wishes)


def _add(existing: tuple[str, ...], new: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*existing, *new]))
