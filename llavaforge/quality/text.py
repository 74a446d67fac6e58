"""Splitting generated answers into the units the checks reason about."""

from __future__ import annotations

import re
from typing import NamedTuple

# "double", 'single' (not apostrophes: no word character outside), and typographic quotes.
_QUOTED = re.compile(r"\"([^\"\n]+)\"|“([^”\n]+)”|‘([^’\n]+)’|(?<![\w'])'([^'\n]+)'(?![\w])")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_CLAUSE_BREAK = re.compile(r"[,;:()]|\b(?:but|while|whereas|although|though|instead|except)\b", re.I)
QUOTE_PLACEHOLDER = " QUOTED "


class Quote(NamedTuple):
    text: str
    start: int
    end: int


def quotes(text: str) -> list[Quote]:
    return [Quote(next(g for g in m.groups() if g is not None), m.start(), m.end())
            for m in _QUOTED.finditer(text)]


def without_quotes(text: str, placeholder: str = QUOTE_PLACEHOLDER) -> str:
    """Quoted text is what the image shows or someone says, not an object the answer asserts."""
    return _QUOTED.sub(placeholder, text)


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text) if s.strip()]


def clauses(sentence: str) -> list[str]:
    return [c for c in _CLAUSE_BREAK.split(sentence) if c and c.strip()]


def sentence_around(text: str, start: int, end: int) -> str:
    """The sentence of `text` that holds the span start..end (for cue words near a quote)."""
    left = max(text.rfind(mark, 0, start) for mark in (". ", "! ", "? ", "\n"))
    right_marks = [i for i in (text.find(mark, end) for mark in (". ", "! ", "? ", "\n")) if i >= 0]
    return text[left + 1 if left >= 0 else 0: min(right_marks) if right_marks else len(text)]


# Function words: they carry no content, so a phrase made of them says nothing by itself.
STOPWORDS = frozenset("""
a an the this that these those there here it its it's they them their theirs he him his she her hers
we us our you your i me my mine one ones some any no not none all each every both either neither
and or but nor so yet if then than as of in on at by for with from to into onto upon about over
under above below between among through during before after up down out off near next beside
behind is are was were be been being am do does did doing done have has had having will would shall
should can could may might must what which who whom whose when where why how very too also just
only even still again more most much many few such own same other another while because
""".split())
