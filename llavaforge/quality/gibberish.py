"""Gibberish: text that is not language (a random or broken model, a decoding error).

Either sign is enough:
- characters no writer puts into text: U+FFFD (bytes the tokenizer could not decode),
  control characters other than tab and line breaks, surrogates, private-use and unassigned
  code points;
- token soup: too many tokens that are not words. A token is a word when the English word
  list (SCOWL, `words.py`), the object lexicon or the image's own annotations (tags, OCR,
  captions, detector labels) know it, so brand names on a sign or an odd tag do not count
  against an answer. Numbers, single characters and number-unit tokens ("9am", "2nd",
  "1990s") are not counted either way; letters mixed with digits ("tant880ation") or
  lower-case running into upper-case inside a token ("gainessingMulanbr") are not words.

The word list is English, like the prompt library: an answer in another language reads as
token soup here (and as an obeyed injection when untrusted text asked for that language).
"""

from __future__ import annotations

import re
import unicodedata
from typing import AbstractSet, Iterable, NamedTuple, Optional

from llavaforge.quality.finding import GIBBERISH, Finding
from llavaforge.quality.text import without_quotes
from llavaforge.quality.words import english_words
from llavaforge.schemas.llava import IMAGE_TOKEN
from llavaforge.schemas.record import Turn

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_NUMBER_UNIT = re.compile(r"\d+[a-z]{0,3}", re.I)
_CAMEL = re.compile(r"[a-z][A-Z]")
_ALLOWED_CONTROLS = frozenset("\t\n\r")
_BAD_CATEGORIES = {"Cc": "control", "Cs": "surrogate", "Co": "private-use", "Cn": "unassigned"}
REPLACEMENT = "\ufffd"


def bad_characters(text: str) -> list[str]:
    """Names of the characters in `text` that are not text, e.g. `U+FFFD`, `U+0015 (control)`."""
    found = []
    for ch in dict.fromkeys(text):
        if ch == REPLACEMENT:
            found.append("U+FFFD (replacement)")
        elif ch not in _ALLOWED_CONTROLS and unicodedata.category(ch) in _BAD_CATEGORIES:
            found.append(f"U+{ord(ch):04X} ({_BAD_CATEGORIES[unicodedata.category(ch)]})")
    return found


def known_words(texts: Iterable[str]) -> set[str]:
    """The lower-case word tokens of `texts` (annotations, lexicon forms): known to the check."""
    return {t.lower() for text in texts for t in _TOKEN.findall(text.replace("’", "'"))}


class WordCount(NamedTuple):
    words: int
    unknown: list[str]

    @property
    def unknown_ratio(self) -> float:
        return len(self.unknown) / self.words if self.words else 0.0


def _plain(token: str) -> str:
    token = token.lower()
    return token[:-2] if token.endswith("'s") else token


def count_words(text: str, extra_known: AbstractSet[str] = frozenset()) -> WordCount:
    """How many tokens of `text` are judged, and which of them are not words. Quoted text is
    left out: it is what a sign says, in whatever language or spelling the sign has."""
    vocabulary = english_words()
    words, unknown = 0, []
    for token in _TOKEN.findall(without_quotes(text.replace(IMAGE_TOKEN, " "), " ").replace("’", "'")):
        if len(token) < 2 or _NUMBER_UNIT.fullmatch(token):
            continue
        words += 1
        plain = _plain(token)
        # No code point is both a letter and a digit, so a token of letters skips the scan.
        mixed = (not token.isalpha() and any(c.isdigit() for c in token)) or bool(_CAMEL.search(token))
        if plain in extra_known or (not mixed and plain in vocabulary):
            continue
        unknown.append(token)
    return WordCount(words, unknown)


def gibberish_finding(turns: list[Turn], extra_known: AbstractSet[str], min_words: int,
                      max_unknown_ratio: float) -> Optional[Finding]:
    evidence = []
    for i, turn in enumerate(turns):
        bad = bad_characters(turn.value)
        if bad:
            evidence.append(f"turn {i}: {', '.join(bad)}")
            continue
        count = count_words(turn.value, extra_known)
        if count.words >= min_words and count.unknown_ratio > max_unknown_ratio:
            shown = ", ".join(repr(t) for t in list(dict.fromkeys(count.unknown))[:6])
            evidence.append(f"turn {i}: {len(count.unknown)} of {count.words} tokens are not words ({shown})")
    return Finding(GIBBERISH, "; ".join(evidence)) if evidence else None
