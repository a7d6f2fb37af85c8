"""Finding the movies a chat message names, written the way people write them, and the ones the catalog lacks.

A title is looked for where people put one: after a verb of taste ("I loved heat", "a fan of Alien"), before
a verdict ("shawshenk redemption was amazing", "the matrix is my favourite"), on its own before a verdict on
it ("pulp fictoin and reservoir dogs, loved both"), after a question ("do you have The Sixth Sense?"), in
quotes, or written with its year; titles in title case are also found anywhere (``TitleScanner``). A name
resolves to a catalog item when it is the item's title (any case, articles, accents and punctuation aside;
numerals and Roman numerals alike; the part before a colon or an alternate title in parentheses also
counts), within a small typo of it, or, where a verb or verdict marks it as a title, when its words occur
together in one title only ("shawshank"). A year written with it picks the version ("Cape Fear from 1962");
without one the most-watched version wins. A name that resolves to nothing is an unknown title when it was
written as one (capitalised or quoted, or in a title position and not a word people use about films: "the
acting", "the ending"); a sequel number after a catalog title ("Toy Story 2") makes it unknown too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property

from rapidfuzz import fuzz, process

from recllm.data.catalog import ItemCatalog, natural_title, normalize_title
from recllm.tasks.titles import TitleScanner

MATCH_RATIO = 88.0
EXACT_YEAR_SLACK = 1
"""A title written with a year names the catalog film of that title only within this many years (people
misremember by one); a title within a typo must have the year exactly."""
LOOSE_COVERAGE = 0.5
"""A name whose words occur in one title only names it when they are at least this share of its words."""
_ARTICLES = frozenset({"the", "a", "an", "of", "and"})
"""A name within a typo of a title: rapidfuzz ratio over normalised titles at least this."""
_ROMAN = {"ii": "2", "iii": "3", "iv": "4", "v": "5", "vi": "6", "one": "1", "two": "2", "three": "3",
          "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
          "twelve": "12"}
_Y = r"(?:18|19|20)\d{2}"
_YEAR_AFTER = re.compile(rf"^\s*(?:\(\s*(?P<a>{_Y})\s*\)|,?\s*(?:from|of|in)\s+(?P<b>{_Y})(?![0-9]))",
                         re.IGNORECASE)
_SEQUEL = re.compile(r"^\s*(?:part\s+)?(?P<n>[2-9]|1[0-9]|ii|iii|iv|vi)\b(?!\s*(?:stars?|out of|/|years|minutes))",
                     re.IGNORECASE)
_CUE = re.compile(
    r"\b(?:lov(?:e|ed|ing)|lik(?:e|ed|ing)|enjoy(?:ed|ing)?|adore[d]?|hated?|dislike[d]?|detest(?:ed)?|"
    r"can'?t stand|couldn'?t stand|fan of|(?:favou?rite|fave|fav)(?: (?:movie|film))?(?: is| was| ever is)?|"
    r"similar to|more like|reminds me of|seen|watched|saw|thought|have you got|do you have|got any|what about|"
    r"how about|anything like|something like|movies like|films like|rewatched|rewatching|recommend|"
    r"grew up (?:on|with)|obsessed with|raised on)\b"
    r"|^\W*(?:is|are)\b(?=\s.+?\s(?:in (?:your|the) (?:catalog|list|collection|database)|available)\b)",
    re.IGNORECASE)
"""Verbs and phrases after which people name a title."""
_CONTINUES = re.compile(r"^\s+(?!(?:and|or|but|was|is|were|are|so|too|a|an|lot|very|much|because|from|in|with|i|it|"
                       r"since|when|if|which|who|as|though|although|while|imo|honestly|lol|haha|movie|film|one|ones|"
                       r"again|already|yet|more|most|please|movies|films|series|trilogy|sequel|to|for|by|on|at|the|than|then|"
                       r"also|really|twice|once|ever|back|growing|last|first|s|my|me|you|we|they|he|she|im|i'm|"
                       r"i've|i'd|tho|both|all|any|some|is|has|had|have|did|does|made|got|still|not|no|just)\b)"
                       r"[a-z]", re.IGNORECASE)
QUOTED = re.compile(r"\"([^\"]{2,80})\"|(?<![A-Za-z0-9])'([^']{2,80})'(?![A-Za-z0-9])")
"""A title in double or single quotes (an apostrophe inside a word is not a quote)."""
_WITH_YEAR = re.compile(rf"(?P<name>[A-Za-z0-9][^()\n]{{0,80}}?)\s*\(\s*(?P<year>{_Y})\s*\)")
_NOT_A_NAME = re.compile(r"^\s*(?:(?:the\s+)?(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|"
                         r"last|middle|\d+(?:st|nd|rd|th))(?:\s+(?:one|ones|two|three|four|five|movie|film|pick|"
                         r"option|suggestion))?\s*$|#|\d+\s*$|(?:the\s+)?'?\d0'?s\b|(?:19|20)\d0s\b|"
                         r"(?:after|before|since|until|between|older|newer|around)\b)", re.IGNORECASE)
_VERDICT = re.compile(
    r"\s+(?:made me (?:cry|laugh|think|smile)|blew (?:me away|my mind)|stuck with me|still haunts me|"
    r"never gets old)\b|"
    r"\s+(?:was|is|were|are|'s|felt|seemed|remains|still is)\s+(?:so |really |pretty |just |truly |absolutely |"
    r"honestly |totally |way |kind of |kinda |a bit |the )?(?:great|amazing|awesome|incredible|brilliant|"
    r"fantastic|excellent|wonderful|perfect|fun|good|cool|epic|superb|a blast|a masterpiece|a classic|best|"
    r"my (?:all[- ]time )?(?:favou?rites?|faves?|favs?)|my go-to|sweet|lovely|beautiful|gorgeous|hilarious|"
    r"moving|touching|gripping|stunning|solid|decent|genius|a gem|so good|better|worse|funnier|scarier|"
    r"boring|awful|terrible|bad|overrated|"
    r"underrated|meh|lame|dull|worst|"
    r"garbage|rubbish|too long|a mess|a letdown|disappointing|slow|stupid|dumb|not (?:good|great|for me))\b",
    re.IGNORECASE)
_ANAPHORA = re.compile(r"^\W*(?:and\s+)?(?:(?:actually|really|honestly|in fact|tbh|to be honest|no|wait|but)\W+)*"
                       r"(?:i\s+|i'm\s+|im\s+)?(?:really\s+|totally\s+|absolutely\s+)?"
                       r"(?P<verb>lov(?:ed|e)|lik(?:ed|e)|enjoyed|adored|hated|disliked|(?:a\s+)?(?:big\s+)?fan of|"
                       r"didn'?t like|did not like|overrated|boring|awful|great|amazing|fantastic|awesome)\b"
                       r"(?:\s+(?:it|them|both|those|that one|these|all of them|all three)\b.*|\W*$)", re.IGNORECASE)
_NEGATIVE_VERB = re.compile(r"hated|disliked|didn'?t like|did not like|overrated|boring|awful", re.IGNORECASE)
_SPLIT = re.compile(r"\s*(?:\band\b|\bor\b|&|/|\bplus\b|\bas well as\b|\bthough\b|\ba lot\b|\bvery much\b|"
                    r"\bso much\b|\btoo\b|\bboth\b|\bback in the day\b|\bgrowing up\b|\bas a kid\b)\s*",
                    re.IGNORECASE)
_STOP = re.compile(r"\s+(?:because|since|when|if|so|which|who|as well|but|though|although|while|cause|cuz|imo|"
                   r"honestly|lol|haha|from the|in the|in your|available|with|by|for|is|was|were|are|i|i'm|i've|"
                   r"it's|either|"
                   r"recently|lately|btw|tbh|anyway|again|yesterday|last night|last week|this week|tonight|"
                   r"the other day|a while ago|years ago|as a kid|growing up|back then|ever since)\b.*",
                   re.IGNORECASE)
_LEAD = re.compile(r"^(?:(?:oh|ah|well|ok|okay|honestly|actually|also|and|so|hmm+|wait|sorry|no|yes|yeah|lol|"
                   r"i think|i guess|imo|btw|my bad|oops|i mean|i meant|it's|its|it was|the movie|the film|"
                   r"movies like|films like|something like|stuff like)(?:\W+|$))+", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+")
_NOT_TITLE_WORDS = """
it that this them those these one ones both all everything anything something nothing movie movies film films
stuff things thing the a an any some more less other others most lots much what which whatever you your my me
i we he she they his her their its our acting plot story stories ending endings music soundtrack score cast
characters character effects visuals dialogue dialog script director directing cinematography pacing twist
twists scenes scene actors actor actress performances performance action humor humour jokes style vibe vibes
genre genres kind kinds sort type types list suggestions suggestion recommendations picks pick option options
first second third last middle number idea ideas way time times part parts bit lot old new recent classics
classic series sequel sequels original remake version cinema theater theatre tv show shows episode episodes
book books novel animation animated era decade years year it's ever already again yet before now tonight today
good great best nice cool fun bad awful
"""
_NOT_TITLES = frozenset(_NOT_TITLE_WORDS.split())


@dataclass(frozen=True)
class Named:
    """A catalog item named in a clause, at ``start:end``; ``negative`` is the polarity a later clause gave it
    ("I said I liked Jumanji, but actually I hated it"), None when its own clause decides."""

    item: str
    start: int
    end: int
    negative: bool | None = None


class TitleReader:
    """Finds named catalog items and unknown titles in one clause (see the module docstring);
    ``popularity`` (item id -> how often watched) picks among versions of a title written without a year."""

    def __init__(self, catalog: ItemCatalog, popularity: Mapping[str, float] | None = None, *,
                 other_words: Callable[[str], bool] | None = None) -> None:
        """``other_words`` says whether a name is made of words that mean something else (genre words)."""
        self.catalog = catalog
        self.popularity = popularity or {}
        self.other_words = other_words
        self.scanner = TitleScanner(catalog)

    @cached_property
    def _keys(self) -> dict[str, list[str]]:
        """Every matching key -> the item ids it names, most watched first."""
        keys: dict[str, list[str]] = {}
        for item in self.catalog:
            for variant in _variants(item.title):
                ids = keys.setdefault(variant, [])
                if item.id not in ids:
                    ids.append(item.id)
        for ids in keys.values():
            ids.sort(key=lambda i: -self.popularity.get(i, 0.0))
        return keys

    @cached_property
    def _words(self) -> dict[str, set[str]]:
        index: dict[str, set[str]] = {}
        for key in self._keys:
            for word in key.split():
                index.setdefault(word, set()).add(key)
        return index

    def resolve(self, name: str, year: int | None = None, *, loose: bool = False) -> str | None:
        """The item ``name`` names (None when none is close enough); ``loose`` also accepts a name whose words
        occur together in one title only."""
        key = _key(name)
        if not key:
            return None
        ids = self._keys.get(key)
        if ids is not None and year is not None and not self._near_year(ids, year, EXACT_YEAR_SLACK):
            return None  # the title, but a year it does not have: another film
        if ids is None:
            match = process.extractOne(key, self._keys.keys(), scorer=fuzz.ratio, score_cutoff=MATCH_RATIO)
            if match is not None and (year is None or self._near_year(self._keys[match[0]], year, 0)):
                ids = self._keys[match[0]]
        if ids is None and loose:
            words = [w for w in key.split() if w not in _NOT_TITLES]
            if words and max(len(w) for w in words) >= 4:
                common = set.intersection(*(self._words.get(w, set()) for w in words))
                items = {i for k in common for i in self._keys[k]}
                titles = {normalize_title(self.catalog[i].title) for i in items}
                content = [w for w in next(iter(titles)).split() if w not in _ARTICLES] if len(titles) == 1 else []
                if content and len(words) / len(content) >= LOOSE_COVERAGE and \
                        (year is None or self._near_year(list(items), year, 0)):
                    ids = sorted(items, key=lambda i: -self.popularity.get(i, 0.0))
        if not ids:
            return None
        return self._version(ids, year)

    def _near_year(self, ids: list[str], year: int, slack: int) -> bool:
        return any(self.catalog[i].year is not None and abs(self.catalog[i].year - year) <= slack  # type: ignore[operator]
                   for i in ids)

    def _version(self, ids: list[str], year: int | None) -> str:
        """Among items of one title, the one from ``year`` (else the most watched)."""
        title = normalize_title(self.catalog[ids[0]].title)
        versions = [i for i in self._keys.get(title, ids) if normalize_title(self.catalog[i].title) == title] or ids
        if year is not None:
            for item in versions:
                if self.catalog[item].year == year:
                    return item
        return versions[0]

    def read(self, clause: str, next_clause: str = "") -> tuple[list[Named], list[str]]:
        """The catalog items ``clause`` names and the titles it names that the catalog lacks; ``next_clause``
        may carry the verdict on a clause that only names titles ("Heat and Alien, loved both")."""
        named: list[Named] = []
        unknown: list[str] = []

        def free(start: int, end: int) -> bool:
            return all(end <= n.start or start >= n.end for n in named)

        for mention in self.scanner.titles(clause):
            after = clause[mention.end:]
            sequel = _SEQUEL.match(after)
            if sequel is not None and mention.year is None:  # "Toy Story 2": a sequel the catalog lacks
                unknown.append(clause[mention.start:mention.end + sequel.end()].strip())
                named.append(Named("", mention.start, mention.end + sequel.end()))
                continue
            if mention.year is None and self._continues(clause[mention.start:mention.end], after):
                continue  # "the phantom menace" is not "The Phantom": the name goes on
            year_match = _YEAR_AFTER.match(after) if mention.year is None else None
            year = mention.year or (int(year_match["a"] or year_match["b"]) if year_match else None)
            end = mention.end + (year_match.end() if year_match else 0)
            item = self._version(self._keys.get(_key(self.catalog[mention.item].title), [mention.item]), year)
            named.append(Named(item, mention.start, end))
        for m in _WITH_YEAR.finditer(clause):  # "American Beauty (1999)", "I really enjoyed heat (1995)"
            head = m["name"]
            cue = list(_CUE.finditer(head))
            offset = cue[-1].end() if cue else 0
            pieces = _parts(head[offset:])
            if not pieces:
                continue
            piece_offset, name = pieces[-1]
            lead = _LEAD.match(name)
            if lead:
                piece_offset, name = piece_offset + lead.end(), name[lead.end():]
            start = m.start("name") + offset + piece_offset
            if not name or not free(start, m.end()) or not self._title_like(name, False):
                continue
            found = self.resolve(name, int(m["year"]))
            if found is not None:
                named.append(Named(found, start, m.end()))
            elif name[:1].isupper() or self._plausible_unknown(name):
                unknown.append(f"{name.strip()} ({m['year']})")  # as written, year included
                named.append(Named("", start, m.end()))
        for start, end, quoted, loose, whole in self._candidates(clause):
            if not free(start, end):
                continue
            raw = clause[start:end]
            name = _LEAD.sub("", raw.strip(" \"'?!.,-")).strip(" \"'?!.,-")
            if not name:
                continue
            start += raw.find(name) if name in raw else 0
            end = start + len(name)
            if not self._title_like(name, quoted):
                continue
            found = self.resolve(name, loose=loose and not whole)
            if found is not None:
                named.append(Named(found, start, end))
            elif not whole and (quoted or name[:1].isupper() or (loose and self._plausible_unknown(name))):
                unknown.append(name)
                named.append(Named("", start, end))
        if not self.has_cue(clause) and next_clause and _ANAPHORA.match(next_clause):
            lead = _LEAD.match(clause)
            base = lead.end() if lead else 0
            for offset, part in _parts(clause[base:]):
                start, end = base + offset, base + offset + len(part)
                if not free(start, end) or not self._title_like(part, False):
                    continue
                found = self.resolve(part)
                if found is not None:
                    named.append(Named(found, start, end))
                elif part[:1].isupper() or self._plausible_unknown(part):
                    unknown.append(part)
                    named.append(Named("", start, end))
        polarity = _anaphoric_polarity(next_clause) if next_clause else None
        out = [Named(n.item, n.start, n.end, polarity) for n in named if n.item]
        return sorted(out, key=lambda n: n.start), list(dict.fromkeys(unknown))

    @staticmethod
    def _continues(mention: str, after: str) -> bool:
        """Whether the name goes on past a catalog title: a capitalised word follows ("The Phantom Menace"),
        or, for a title written in lower case, a word that is not a function word ("the phantom menace")."""
        following = re.match(r"^\s+([A-Za-z][\w'-]*)", after)
        if following is None:
            return False
        word = following.group(1)
        if word[0].isupper() and word.lower() not in ("i", "i'm", "i've", "i'd", "btw", "imo", "lol", "tbh"):
            return True
        return mention == mention.lower() and bool(_CONTINUES.match(after))

    def _candidates(self, clause: str) -> list[tuple[int, int, bool, bool, bool]]:
        """``(start, end, quoted, loose, whole)`` of each place a title may be written; a ``whole`` span (the
        text after a verb, before it is split at "and") counts only when it resolves ("Monty Python and the
        Holy Grail"), its parts come after it."""
        out: list[tuple[int, int, bool, bool, bool]] = []
        for m in QUOTED.finditer(clause):
            group = 1 if m[1] else 2
            out.append((m.start(group), m.end(group), True, True, False))
        spans: list[tuple[int, str]] = []
        cues = list(_CUE.finditer(clause))
        for m, following in zip(cues, [*cues[1:], None], strict=False):
            stop = following.start() if following is not None else len(clause)
            spans.append((m.end(), _STOP.sub("", clause[m.end():stop])))
        verdict = _VERDICT.search(clause)
        if verdict is not None:
            head = clause[:verdict.start()]
            lead = _LEAD.match(head)
            base = lead.end() if lead else 0
            spans.append((base, head[base:]))
        for base, span in spans:
            stripped = span.strip()
            if stripped and len(_parts(span)) > 1:
                at = base + span.find(stripped)
                out.append((at, at + len(stripped), False, False, True))
            for offset, part in _parts(span):
                out.append((base + offset, base + offset + len(part), False, True, False))
        return out

    @staticmethod
    def has_cue(clause: str) -> bool:
        """Whether ``clause`` holds a verb of taste or a verdict of its own."""
        return bool(_CUE.search(clause) or _VERDICT.search(clause))

    def _title_like(self, name: str, quoted: bool) -> bool:
        """Whether ``name`` may be a title: not empty or long, not only words about films in general, not a
        year, decade or list reference, and not what ``other_words`` claims (genre words: "horror")."""
        words = _WORD.findall(name.lower())
        if not words or len(name) > 80 or len(words) > 9:
            return False
        if quoted:
            return True
        if all(w in _NOT_TITLES for w in words) or _NOT_A_NAME.search(name):
            return False
        return not (self.other_words is not None and self.other_words(name))

    def _plausible_unknown(self, name: str) -> bool:
        """Whether a lower-case name in a title position reads as a title: short, and its content words are
        not words people use about films in general."""
        words = _WORD.findall(name.lower())
        content = [w for w in words if w not in ("the", "a", "an", "of", "and")]
        return bool(content) and len(words) <= 6 and not any(w in _NOT_TITLES for w in content) and \
            not any(w.isdigit() and len(w) == 4 for w in words)


def _anaphoric_polarity(clause: str) -> bool | None:
    """True (negative) or False (positive) when ``clause`` is a verdict on what came before ("hated it",
    "loved both"); None when it is not."""
    match = _ANAPHORA.match(clause)
    if match is None:
        return None
    return bool(_NEGATIVE_VERB.search(match["verb"]))


def _parts(span: str) -> list[tuple[int, str]]:
    """The title-sized pieces of ``span`` split at "and", "or", ..., with their offsets."""
    out = []
    position = 0
    for piece in _SPLIT.split(span):
        stripped = piece.strip()
        if not stripped:
            continue
        index = span.find(stripped, position)
        if index >= 0:
            out.append((index, stripped))
            position = index + len(stripped)
    return out


def _key(text: str) -> str:
    """A title's matching key: normalised, numerals and Roman numerals as digits."""
    words = normalize_title(text).split()
    return " ".join(_ROMAN.get(w, w) for w in words)


def _variants(title: str) -> set[str]:
    """The keys one catalog title answers to: whole, before a colon ("The Lost World"), and with or without a
    parenthesised alternate title ("Seven (Se7en)")."""
    base = re.sub(r"\s*\(\d{4}\)\s*$", "", title.strip())
    plain = re.sub(r"\s*\([^)]*\)", "", base).strip() or base
    out = {_key(base), _key(plain)}
    for alternate in re.findall(r"\(([^)]*)\)", base):
        if len(alternate) >= 4 and not re.search(r",\s*(?:the|a|an|la|le|les|il|el|der|die|das)$", alternate,
                                                 re.IGNORECASE):
            out.add(_key(alternate))
    natural = natural_title(plain)
    if ":" in natural and len(_key(natural.split(":", 1)[0])) >= 4:
        out.add(_key(natural.split(":", 1)[0]))
    return {k for k in out if k}
