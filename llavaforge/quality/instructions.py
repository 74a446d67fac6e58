"""Instructions in untrusted text: does a text that came with the image (or that OCR read in
it) tell the writer what to do?

A text holds an instruction when it has any of: a verb addressed to the writer opening a
clause or a line ("ignore ...", "say ...", "write ...", "repeat ...", "visit ..."); words
aimed at the answers or the prompt ("in every answer", "from now on", "new instruction",
"previous instructions", "system prompt"); role labels or a fake question/answer pair
("User:", "Assistant:", "Question:", "Answer:"); chat-template or image tokens; quote fences
("<<<", ">>>"). Only the part of a text from its first such sentence or line on is the
instruction: what comes before ("A tabby cat on a sofa. Ignore ...") describes the image.

Signs are full of imperatives too ("STOP", "PUSH", "KEEP OUT"): those verbs are not listed.
Verbs that are as often nouns ("Start of the race", "Name: John") count only with something
aimed at a reader in the same clause (you, your answer, "act as", a URL, a number).
"""

from __future__ import annotations

import re
from typing import Optional

from llavaforge.quality.text import sentences

IMPERATIVES = frozenset({
    "ignore", "disregard", "forget", "override", "bypass", "say", "write", "answer", "respond",
    "reply", "repeat", "print", "output", "reveal", "pretend", "claim", "tell", "describe",
    "mention", "include", "translate", "spell", "insist", "declare", "speak", "talk", "visit",
    "buy", "click", "subscribe", "download",
})
WEAK_IMPERATIVES = frozenset({"show", "act", "state", "type", "add", "end", "start", "begin", "name",
                              "list", "use", "call", "order", "send", "shop", "text"})
COMMERCE_VERBS = frozenset({"visit", "buy", "call", "click", "order", "subscribe", "download", "shop"})
# Words that may come before the verb of an imperative clause.
_LEAD_INS = frozenset({"please", "now", "just", "also", "simply", "always", "instead", "kindly", "then",
                       "and", "but", "so", "you", "must", "should", "will"})
_AIMED = re.compile(r"\b(?:you|your|answers?|repl(?:y|ies)|responses?|as)\b|\d{3}|www\.|https?://", re.I)
_ADDRESS = re.compile(
    r"\b(?:(?:in|to|with|end|start|begin)\s+(?:every|each|all|your)\s+(?:answers?|repl(?:y|ies)|responses?"
    r"|outputs?|messages?|sentences?)|from\s+now\s+on|new\s+instructions?|(?:previous|prior|earlier|above"
    r"|original|system|your)\s+(?:instructions?|rules|prompts?|notes)|system\s+prompt|you\s+are\s+now"
    r"|you\s+must|end\s+of\s+(?:the\s+)?quoted?(?:\s+text)?)\b",
    re.IGNORECASE)
_ROLE_LABEL = re.compile(
    r"(?:^|(?<=[.!?])|(?<=[.!?]\s))[ \t]*(?:user|assistant|human|system|gpt|ai|bot|question|answer|q|a)[ \t]*:",
    re.IGNORECASE | re.MULTILINE)
_SPECIAL_TOKENS = re.compile(
    r"<\|[^|>\n]*\|>|\[/?INST\]|<</?SYS>>|</?s>|<image>|\[image\]|<(?:start|end)_of_turn>|<{2,}|>{2,}",
    re.IGNORECASE)
_CLAUSE_BREAK = re.compile(r"[.!?:;,\n]+")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def words(text: str) -> list[str]:
    """Lower-case word tokens, any script; apostrophes kept ("don't") but a possessive 's
    dropped ("pirate's" is "pirate")."""
    found = (w.lower() for w in _WORD.findall(text.replace("’", "'")))
    return [w[:-2] if w.endswith("'s") else w for w in found]


def _opens_with_imperative(clause: str) -> Optional[str]:
    for word in words(clause):
        if word in IMPERATIVES or (word in WEAK_IMPERATIVES and _AIMED.search(clause)):
            return word
        if word not in _LEAD_INS:
            return None
    return None


def instruction_markers(text: str) -> list[str]:
    """What makes `text` an instruction (empty when it is not one)."""
    markers = [m.group(0).strip() for pattern in (_ADDRESS, _ROLE_LABEL, _SPECIAL_TOKENS)
               for m in pattern.finditer(text)]
    markers += [v for v in map(_opens_with_imperative, _CLAUSE_BREAK.split(text)) if v]
    return markers


def instruction_part(text: str) -> Optional[str]:
    """`text` from its first sentence or line that holds an instruction marker on; None when
    no sentence does."""
    parts = sentences(text)
    for i, part in enumerate(parts):
        if instruction_markers(part):
            return "\n".join(parts[i:])
    return None


def description_part(text: str) -> str:
    """What `text` says before any instruction: the part that may describe the image."""
    parts = sentences(text)
    for i, part in enumerate(parts):
        if instruction_markers(part):
            return "\n".join(parts[:i])
    return text
