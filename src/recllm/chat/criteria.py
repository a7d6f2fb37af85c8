"""Decision criteria in a person's words: "mostly the era, a bit the genre" becomes aspect weights for
``AspectAnalyzer`` (``recllm.chat.aspects``).

Each aspect is named by everyday words (era: "era", "year", "decade", "how old"; genre: "genre", "kind";
similar: "similar", "like what I liked"; collaborative: "people like me", "the recommender"; popularity:
"popular", "well known", "ratings"). A modifier in the words before it scales the aspect's default weight:
"mostly", "mainly", "above all" by 4, none by 2, "a bit", "slightly", "a little" by 0.5, and "not", "don't care
about", "ignore" set it to 0. Aspects not named keep their default weight. A message is read as criteria
only when it says how much something counts ("mostly", "a bit", "matters", "care about", ...).
"""

from __future__ import annotations

import re

from recllm.chat.aspects import WEIGHTS

_ASPECT_WORDS = {
    "era": r"era|eras|years?|decades?|how old|age|period|time it was made|release date|old or new",
    "genre": r"genres?|kind of (?:movie|film)|type of (?:movie|film)|kind|type",
    "similar": r"similar(?:ity)?|like what i (?:liked|loved|watched)|close to what i liked|my taste",
    "collaborative": r"people like me|(?:the )?recommender|collaborative|what others like me watch",
    "popularity": r"popular(?:ity)?|well[- ]known|famous|ratings?|rated|reviews?|acclaim",
}
_MODIFIERS = ((r"\b(?:not|don'?t care about|do not care about|ignore|never mind|doesn'?t matter)\b", 0.0),
              (r"\b(?:a (?:little )?bit|a little|slightly|somewhat|less|a touch)\b", 0.5),
              (r"\b(?:mostly|mainly|above all|most of all|primarily|especially|most importantly|first and "
               r"foremost|really)\b", 4.0))
_PATTERNS = {aspect: re.compile(rf"\b(?:{words})\b", re.IGNORECASE) for aspect, words in _ASPECT_WORDS.items()}
_CLAUSE = re.compile(r",|;|\band\b|\bbut\b|\bthen\b", re.IGNORECASE)
_WEIGHING = re.compile(r"\b(?:matters?|important|care about|cares? (?:most|less)|weigh|weight|counts?|focus|"
                       r"priority|prioriti[sz]e|mostly|mainly|above all|most of all|primarily|a (?:little )?bit|"
                       r"slightly|more than|less than|ignore|doesn'?t matter|never mind)\b", re.IGNORECASE)
PLAIN = 2.0
"""The factor for an aspect named without a modifier ("the era matters")."""


def read_criteria(text: str) -> dict[str, float] | None:
    """Aspect weights the text states (None when it names no aspect, or names one without saying how much it
    counts: "something popular from the 90s" is a wish, not a criterion)."""
    if not _WEIGHING.search(text):
        return None
    weights = dict(WEIGHTS)
    named = False
    for clause in _CLAUSE.split(text):
        for aspect, pattern in _PATTERNS.items():
            match = pattern.search(clause)
            if match is None:
                continue
            named = True
            before = clause[:match.start()]
            factor = next((f for modifier, f in _MODIFIERS if re.search(modifier, before, re.IGNORECASE)), PLAIN)
            weights[aspect] = WEIGHTS[aspect] * factor
    if not named:
        return None
    if sum(weights.values()) <= 0:
        return None  # every aspect switched off: nothing to weigh with
    return weights
