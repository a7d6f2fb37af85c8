"""The conversational recommender: each turn reads the message into the preference state, then either asks one
clarifying question (nothing to go on yet) or calls the recommender tool and answers with a short list, one
line of reason per item.

The tool scores the catalog with the retriever from the liked items (and the user's own history when the
chat belongs to a known user), or by popularity when only constraints are known; removes what was liked,
disliked or, after "something else", already shown; keeps only items meeting every constraint (wanted
genres, avoided genres, year range); and lets the LLM re-ranker order the top candidates when one is
given. Reasons are built from catalog facts and co-watching data, never generated, so they cannot cite
what is not there.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import numpy as np

from recllm.chat.aspects import AspectAnalyzer
from recllm.chat.criteria import read_criteria
from recllm.chat.extract import ordinal_references
from recllm.chat.questions import FactAnswerer, is_question
from recllm.chat.state import Preferences, PreferenceUpdate
from recllm.chat.wishes import WishMatcher, blend
from recllm.data.bundle import DataBundle
from recllm.data.catalog import Item
from recllm.data.itemlist import ItemList
from recllm.llm.base import LLMError
from recllm.models.base import Recommender
from recllm.tasks.genre_words import GenreReader

log = logging.getLogger(__name__)

Action = Literal["ask", "recommend", "no-match", "compare", "answer"]
_COMPARE = re.compile(r"\b(?:compare|comparison|which (?:one )?(?:is|would be|should i pick|is better)|versus|"
                      r"\bvs\.?)\b", re.IGNORECASE)
_ABOUT_ITEM = re.compile(r"^\W*(?:is|was|does|how old is|how old was|what year is|what year was|when was|when did|"
                         r"what genres? (?:is|does|are)|what kind of (?:movie|film) is)\b(?!\s+there\b)",
                         re.IGNORECASE)
_IT = re.compile(r"\b(?:it|that one|this one|that movie|that film|this movie|this film)\b", re.IGNORECASE)


class Extractor(Protocol):
    def extract(self, message: str, state: Preferences) -> PreferenceUpdate: ...


@dataclass(frozen=True)
class ChatItem:
    item: str
    title: str
    year: int | None
    genres: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class ChatReply:
    """The answer to one message: its text, what the agent did, the items shown, and the new state."""

    text: str
    action: Action
    items: tuple[ChatItem, ...]
    state: Preferences
    update: PreferenceUpdate
    reranked: bool = False
    degraded: bool = False

    def payload(self) -> dict[str, Any]:
        """The structured part stored with the turn."""
        return {"action": self.action, "items": [vars(i) | {"genres": list(i.genres)} for i in self.items],
                "source": self.update.source, "notes": list(self.update.notes), "reranked": self.reranked,
                "unknown_titles": list(self.update.unknown_titles), "degraded": self.degraded}


class ChatRecommender:
    """The recommender tool of the agent (see the module docstring)."""

    def __init__(self, data: DataBundle, retriever: Recommender, popular: Recommender, *,
                 reranker: Any | None = None, candidates: int = 20, wishes: WishMatcher | None = None,
                 wish_weight: float = 1.0, genre_weight: float = 1.0) -> None:
        """``genre_weight``: how strongly the genres all liked titles share lift items (standardised, like the
        free-text wishes); 0 turns it off."""
        self.data = data
        self.retriever = retriever
        self.popular = popular
        self.reranker = reranker
        self.candidates = candidates
        self.wishes = wishes
        self.wish_weight = wish_weight
        self.genre_weight = genre_weight
        self.analyzer = AspectAnalyzer(data, retriever)
        self._calls = threading.local()  # one recommender serves concurrent conversations
        self._similarity: tuple[tuple[str, ...], np.ndarray] | None = None

    @property
    def rerank_failure(self) -> str | None:
        """Why this thread's last ``recommend`` answered in the retriever's order (None when it did not)."""
        return getattr(self._calls, "rerank_failure", None)

    @rerank_failure.setter
    def rerank_failure(self, value: str | None) -> None:
        self._calls.rerank_failure = value

    def liked_genres(self, prefs: Preferences) -> tuple[str, ...]:
        """The genres every title liked in the conversation shares (with at least two liked), when no genre
        was asked for: "I loved Toy Story and Aladdin" means animated films more than the co-watching data
        alone says."""
        liked = [self.data.catalog[i] for i in prefs.liked if i in self.data.catalog]
        if prefs.genres or len(liked) < 2:
            return ()
        shared = set(liked[0].genres).intersection(*(set(i.genres) for i in liked[1:]))
        return tuple(g for g in liked[0].genres if g in shared and g.lower() != "unknown")

    def genre_coherence(self, prefs: Preferences) -> np.ndarray | None:
        """The share of ``liked_genres`` each item has (vocabulary order); None when there are none."""
        genres = set(self.liked_genres(prefs))
        if not genres:
            return None
        catalog = self.data.catalog
        return np.array([len(genres & set(catalog[i].genres)) / len(genres) if i in catalog else 0.0
                         for i in self.data.dataset.item_vocab.ids])

    def wish_similarity(self, wishes: Sequence[str]) -> np.ndarray | None:
        """Similarity of every item (vocabulary order) to the free-text wishes; None without a matcher."""
        if self.wishes is None or not wishes:
            return None
        key = tuple(wishes)
        cached = self._similarity  # read once: another thread may replace it
        if cached is None or cached[0] != key:
            cached = self._similarity = key, self.wishes.similarity(key)
        return cached[1]

    def allowed(self, item: Item, prefs: Preferences) -> bool:
        """Whether ``item`` meets every constraint of ``prefs``."""
        genres = set(item.genres)
        if prefs.genres and not genres & set(prefs.genres):
            return False
        if genres & set(prefs.avoid_genres):
            return False
        if prefs.year_min is not None and (item.year is None or item.year < prefs.year_min):
            return False
        return not (prefs.year_max is not None and (item.year is None or item.year > prefs.year_max))

    def recommend(self, prefs: Preferences, k: int, base_history: Sequence[str] = (), exclude: Sequence[str] = ()
                  ) -> tuple[list[str], bool]:
        """Up to ``k`` item ids meeting the constraints, best first, and whether the LLM re-ranked them;
        ``exclude`` are further items never to show (e.g. the user's dislikes given outside the chat). When the
        re-ranker's model fails, the retriever's order answers and ``rerank_failure`` says why."""
        self.rerank_failure = None
        vocab = self.data.dataset.item_vocab
        history = [i for i in dict.fromkeys([*base_history, *prefs.liked]) if i in vocab]
        model = self.retriever if history else self.popular
        scores = model.score(np.array([-1]), [vocab.indices(history)])[0].astype(np.float64)
        blocked = {*history, *prefs.disliked, *prefs.seen_before, *exclude}
        for index, item_id in enumerate(vocab.ids):
            if item_id in blocked or item_id not in self.data.catalog or \
                    not self.allowed(self.data.catalog[item_id], prefs):
                scores[index] = -np.inf
        available = int(np.isfinite(scores).sum())
        if available == 0:
            return [], False
        similarity = self.wish_similarity(prefs.wishes)
        if similarity is not None:
            scores = blend(scores, similarity, self.wish_weight)
        coherence = self.genre_coherence(prefs)
        if coherence is not None:
            scores = blend(scores, coherence, self.genre_weight)
        pool = min(available, max(k, self.candidates) if self.reranker is not None else k)
        best = np.argsort(-scores, kind="stable")[:pool]
        ranked = [vocab.id(int(i)) for i in best]
        reranked = False
        if self.reranker is not None and len(ranked) > 1:
            try:
                result = self.reranker.rerank(history, ItemList(tuple(ranked), scores[best]))
                ranked, reranked = list(result.order), True
            except LLMError as exc:  # the model is down: the retriever's order still answers
                log.warning("chat re-ranking skipped: %s", exc)
                self.rerank_failure = str(exc)
        return ranked[:k], reranked

    def reason(self, item_id: str, prefs: Preferences, base_history: Sequence[str] = ()) -> str:
        """One line from catalog facts and co-watching: wanted genres it has, the liked item it is most
        co-watched with, and its year against the requested range."""
        item = self.data.catalog[item_id]
        parts: list[str] = []
        wanted = [g for g in item.genres if g in prefs.genres]
        genres = wanted or list(item.genres)
        if genres:
            parts.append(f"{'/'.join(genres)} from {item.year}" if item.year else "/".join(genres))
        similarity = self.wish_similarity(prefs.wishes)
        if similarity is not None:
            index = self.data.dataset.item_vocab.index(item_id)
            if (similarity > similarity[index]).mean() < 0.1:  # among the closest tenth of the catalog
                parts.append(f"close to your wish for {' / '.join(prefs.wishes)!r}")
        closest = self.analyzer.closest_liked([*prefs.liked, *base_history], item_id)
        if closest is not None and closest[1] > 0.05:
            other = self.data.catalog[closest[0]].label()
            liked = "you liked" if closest[0] in prefs.liked else "you watched"
            parts.append(f"often watched by people who watched {other}, which {liked}")
        elif not (prefs.liked or base_history):
            users = int(self.data.dataset.item_popularity[self.data.dataset.item_vocab.index(item_id)])
            parts.append(f"watched by {users:,} people in the data")
        return "; ".join(parts) or "matches what you asked for"


QUESTION = ("What would you like to watch? Tell me a few movies you enjoyed, or a genre or period you are in "
            "the mood for (for example: \"I loved Alien and Heat, something from the 80s\").")


class ChatAgent:
    """Turns messages into replies over a ``ChatRecommender`` (see the module docstring)."""

    def __init__(self, recommender: ChatRecommender, extractor: Extractor, *, k: int = 5) -> None:
        self.recommender = recommender
        self.extractor = extractor
        self.k = k
        catalog = recommender.data.catalog
        self.answerer = FactAnswerer(GenreReader({g for i in catalog for g in i.genres if g.lower() != "unknown"}),
                                     max((i.year for i in catalog if i.year is not None), default=None))

    def _asked_about(self, state: Preferences, message: str) -> str | None:
        """The item a question is about: one it points at in the list shown ("is the second one animated?"),
        the one "it" means (the last item asked about, else the first shown), or a title that is the question's
        subject ("how old is Fargo?"); None for questions that are requests ("is there anything like Heat?")."""
        pointed = [state.shown[i] for i, _, _ in ordinal_references(message, len(state.shown))
                   if -len(state.shown) <= i < len(state.shown)]
        if pointed:
            return pointed[0]
        if _IT.search(message):
            return state.focus or (state.shown[0] if state.shown else None)
        if _ABOUT_ITEM.match(message):
            named = self._rules().extract(message, Preferences())
            titles = [*named.liked, *named.disliked]
            return titles[0] if titles else None
        return None

    def _rules(self) -> Extractor:
        """The rule reader (an LLM extractor's own rules: no model call just to find a title)."""
        return getattr(self.extractor, "rules", self.extractor)

    def _referenced(self, state: Preferences, message: str) -> list[str]:
        """Items ``message`` points at: list references ("the first two", "#3") into what was shown, then
        catalog titles it names."""
        out = [state.shown[i] for i, _, _ in ordinal_references(message, len(state.shown))
               if -len(state.shown) <= i < len(state.shown)]
        named = self._rules().extract(message, Preferences()) if not out else None
        if named is not None:
            out += [*named.liked, *named.disliked]
        return list(dict.fromkeys(out))

    def _compare(self, state: Preferences, message: str, base_history: Sequence[str]) -> ChatReply:
        criteria = read_criteria(message) or state.criteria
        items = self._referenced(state, message)[:3]
        if len(items) < 2:
            items = [*items, *[i for i in state.shown if i not in items]][:2]
        if len(items) < 2:
            text = "Tell me which two or three movies to compare (for example \"compare the first two\")."
            return ChatReply(text, "ask", (), state, PreferenceUpdate())
        history = [*base_history, *state.liked]
        comparison = self.recommender.analyzer.compare(history, items, liked=list(state.liked) or None,
                                                       weights=criteria)
        catalog = self.recommender.data.catalog
        lines = [f"Comparing {' and '.join(catalog[i].label() for i in items)}"
                 + (" (weighing what you said matters)" if criteria else "") + ":"]
        for (aspect, leaders), *per_item in zip(comparison.leaders, *(r.aspects for r in comparison.reports),
                                                strict=True):
            best = " and ".join(catalog[i].display_title for i in leaders) if leaders else "a tie"
            lines.append(f"- {aspect}: {best}. " + "; ".join(f"{catalog[r.item].display_title}: {a.reason}"
                                                           for r, a in zip(comparison.reports, per_item,
                                                                           strict=True)))
        overall = " and ".join(catalog[i].display_title for i in comparison.overall) or "neither: they tie"
        scores = ", ".join(f"{catalog[r.item].display_title} {100 * r.score:.0f}%" for r in comparison.reports)
        lines.append(f"Overall the better match is {overall} ({scores}).")
        items_out = tuple(ChatItem(i, catalog[i].display_title, catalog[i].year, tuple(catalog[i].genres),
                                   f"overall match {100 * r.score:.0f}%") for i, r in zip(items, comparison.reports,
                                                                                         strict=True))
        return ChatReply("\n".join(lines), "compare", items_out, replace(state, criteria=criteria),
                         PreferenceUpdate())

    def turn(self, state: Preferences, message: str, *, base_history: Sequence[str] = (),
             exclude: Sequence[str] = ()) -> ChatReply:
        """Answer ``message`` given the conversation's ``state``; ``base_history`` is the user's own history
        (known users) and ``exclude`` items never to show. "compare the first two" compares, a question about
        an item ("is it animated?") is answered from its catalog facts, stated criteria ("mostly the era") weigh
        the aspects of later comparisons and re-order the list shown."""
        if _COMPARE.search(message):
            return self._compare(state, message, base_history)
        if is_question(message):
            target = self._asked_about(state, message)
            answer = self.answerer.answer(message, self.recommender.data.catalog[target]) if target else None
            if answer is not None and target is not None:
                return ChatReply(answer, "answer", (), replace(state, focus=target), PreferenceUpdate())
        criteria = read_criteria(message)
        if criteria is not None and state.shown:
            return self._reorder(state, criteria, base_history)
        update = self.extractor.extract(message, state)
        prefs = state.merge(update)
        if update.others:  # "something else": what was shown is not shown again
            prefs = replace(prefs, seen_before=tuple(dict.fromkeys([*prefs.seen_before, *state.shown])))
        catalog = self.recommender.data.catalog
        wish_signal = bool(prefs.wishes) and self.recommender.wishes is not None
        if not prefs.has_signal and not base_history and not wish_signal:
            text = QUESTION
            if update.unknown_titles:
                text = self.unknown(update.unknown_titles) + " " + QUESTION
            elif prefs.disliked or prefs.avoid_genres:
                text = "Noted what you do not want. " + QUESTION
            degraded = degradation(update, None)
            return ChatReply(text + (f"\n{degraded}" if degraded else ""), "ask", (), prefs, update,
                             degraded=bool(degraded))
        ids, reranked = self.recommender.recommend(prefs, self.k, base_history, exclude)
        if not ids:
            text = (f"Nothing in the catalog that you have not seen matches all of: {describe(prefs)}. "
                    "Loosen one of these (a wider period, another genre) and I will look again.")
            degraded = degradation(update, None)
            return ChatReply(text + (f"\n{degraded}" if degraded else ""), "no-match", (), prefs, update,
                             degraded=bool(degraded))
        items = tuple(ChatItem(i, catalog[i].display_title, catalog[i].year, tuple(catalog[i].genres),
                               self.recommender.reason(i, prefs, base_history)) for i in ids)
        heard = describe(prefs)
        lines = [f"Here are {len(items)} suggestions ({heard}):" if heard else f"Here are {len(items)} suggestions:"]
        lines += [f"{n}. {it.title}{f' ({it.year})' if it.year else ''}: {it.reason}" for n, it in
                  enumerate(items, 1)]
        if update.unknown_titles:
            lines.append(self.unknown(update.unknown_titles))
        degraded = degradation(update, self.recommender.rerank_failure)
        if degraded:
            lines.append(degraded)
        prefs = replace(prefs, shown=tuple(it.item for it in items))
        return ChatReply("\n".join(lines), "recommend", items, prefs, update, reranked, degraded=bool(degraded))

    def _reorder(self, state: Preferences, criteria: dict[str, float], base_history: Sequence[str]) -> ChatReply:
        """The list shown, re-ordered by the aspect scores under the user's own weights."""
        history = [*base_history, *state.liked]
        analyzer = self.recommender.analyzer
        reports = sorted((analyzer.analyze(history, i, liked=list(state.liked) or None, weights=criteria)
                          for i in state.shown), key=lambda r: -r.score)
        catalog = self.recommender.data.catalog
        weights = ", ".join(f"{name} {w / sum(criteria.values()):.0%}" for name, w in
                            sorted(criteria.items(), key=lambda kv: -kv[1]))
        items = tuple(ChatItem(r.item, catalog[r.item].display_title, catalog[r.item].year,
                               tuple(catalog[r.item].genres), f"match {100 * r.score:.0f}%: "
                               + (r.pros[0] if r.pros else r.aspects[0].reason)) for r in reports)
        lines = [f"Re-ordered by what matters to you ({weights}):"]
        lines += [f"{n}. {it.title}{f' ({it.year})' if it.year else ''}: {it.reason}" for n, it in enumerate(items, 1)]
        prefs = replace(state, criteria=criteria, shown=tuple(i.item for i in items))
        return ChatReply("\n".join(lines), "recommend", items, prefs, PreferenceUpdate())

    def unknown(self, titles: Sequence[str]) -> str:
        """A sentence per title the catalog does not hold, with up to three close titles it does hold."""
        catalog = self.recommender.data.catalog
        sentences = []
        for title in titles:
            close = [item.label() for item in catalog.search(title, limit=3)]
            sentences.append(f"I don't know the title '{title}'"
                             + (f"; did you mean {', '.join(close[:-1])} or {close[-1]}?" if len(close) > 1 else
                                f"; did you mean {close[0]}?" if close else " (it is not in the catalog)."))
        return " ".join(sentences)


UNAVAILABLE = "language model unavailable"
"""How a reader's note begins when the model did not answer (``recllm.chat.extract``)."""


def degradation(update: PreferenceUpdate, rerank_failure: str | None) -> str:
    """A sentence telling the person that the language model did not help this turn and what answered
    instead ("" when it did help or was never meant to)."""
    return degraded_sentence(reading=any(note.startswith(UNAVAILABLE) for note in update.notes),
                             ordering=rerank_failure is not None)


def degraded_sentence(*, reading: bool, ordering: bool) -> str:
    """The sentence for a turn in which the model did not read the message (``reading``) or did not order the
    list (``ordering``); "" when neither."""
    parts = (["read your message with rules alone"] if reading else []) + \
        (["kept the retriever's order"] if ordering else [])
    return f"(The language model is not answering right now, so I {' and '.join(parts)}.)" if parts else ""


def describe(prefs: Preferences) -> str:
    """The constraints in words, e.g. "Sci-Fi, no Horror, 1970-1985"."""
    parts = []
    if prefs.genres:
        parts.append("/".join(prefs.genres))
    if prefs.avoid_genres:
        parts.append("no " + ", no ".join(prefs.avoid_genres))
    if prefs.year_min is not None and prefs.year_max is not None:
        parts.append(f"{prefs.year_min}-{prefs.year_max}")
    elif prefs.year_min is not None:
        parts.append(f"from {prefs.year_min} on")
    elif prefs.year_max is not None:
        parts.append(f"up to {prefs.year_max}")
    if prefs.wishes:
        parts.append("about " + " / ".join(prefs.wishes))
    return ", ".join(parts)
