"""Whether a mention in a chat message is wanted or not, for the chat's rule reader (the genre words themselves
are ``recllm.tasks.genre_words``).

``negative`` decides the polarity of a mention from the words around it: a negation before it ("no", "not",
"without", "hate", "instead of", "don't like") counts unless a positive cue comes after that negation ("I hate
horror and love comedy"); a verdict after it ("Heat was boring", "horror is not for me") counts too.
"""

from __future__ import annotations

import re

_NEGATIVE = re.compile(
    r"\b(?:no|not|nothing|none|never|nor|without|avoid|except|exclude|skip|hate[ds]?|hating|dislike[ds]?|"
    r"detest|can'?t stand|cannot stand|couldn'?t stand|sick of|tired of|fed up with|enough of|instead of|"
    r"rather than|other than|don'?t|do not|didn'?t|did not|doesn'?t|does not|wasn'?t|weren'?t|isn'?t|aren'?t|"
    r"won'?t|wouldn'?t|not a fan of|no more)\b", re.IGNORECASE)
_POSITIVE = re.compile(
    r"\b(?:like[ds]?|love[ds]?|loving|enjoy(?:ed|s)?|adore[ds]?|want(?:ed|s)?|prefer(?:red|s)?|fan of|"
    r"in the mood|give me|show me|looking for|how about|into|fond of|more of|some|and also|also)\b",
    re.IGNORECASE)
_VERDICT = re.compile(
    r"^\W*(?:(?:it|that|which|they|this one)\s+)?(?:is|was|are|were|'s|felt|seemed)?\s*(?:so |really |pretty |"
    r"way too |too |kinda |kind of |a bit |totally )?(?:boring|awful|terrible|bad|overrated|meh|lame|dull|"
    r"the worst|garbage|rubbish|not (?:good|great|for me|my thing)|not my (?:thing|cup of tea)|a waste)\b"
    r"|^\W*(?:sucked|sucks|bored me|put me to sleep|isn'?t my thing|is not my thing|not for me|"
    r"(?:that )?i (?:didn'?t|did not|don'?t|do not|never) (?:like|enjoy|love)|(?:that )?i (?:hated|disliked|hate))\b",
    re.IGNORECASE)
_BOUNDARY = re.compile(r"\b(?:and|or|but|then|plus)\b|[,;]", re.IGNORECASE)
NEGATED_CUE_WINDOW = 2
"""A positive cue with a negation this many words or fewer before it is a negative cue ("don't like")."""


def negative(text: str, start: int, end: int) -> bool:
    """Whether the mention at ``text[start:end]`` is unwanted (see the module docstring)."""
    before = text[:start]
    last_negative = max((m.end() for m in _NEGATIVE.finditer(before)), default=-1)
    last_positive = max((m.end() for m in _POSITIVE.finditer(before) if not _cue_negated(before, m.start())),
                        default=-1)
    if last_negative > last_positive:
        return True
    after = text[end:]
    cut = _BOUNDARY.search(after)
    return bool(_VERDICT.search(after[:cut.start()] if cut else after))


def _cue_negated(text: str, start: int) -> bool:
    words = text[:start].split()[-NEGATED_CUE_WINDOW:]
    return bool(words) and bool(_NEGATIVE.search(" ".join(words))) and not _BOUNDARY.search(" ".join(words))
