"""Degenerate generation: loops and answers cut off by the token limit.

Small LLMs (and any LLM at a low `max_new_tokens`) repeat a sentence until the limit, ask the
same question twice, or stop mid-sentence; none of that is fit for training.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Optional

from llavaforge.quality.finding import REPETITION, TRUNCATED, Finding
from llavaforge.schemas.llava import GPT, HUMAN, IMAGE_TOKEN
from llavaforge.schemas.record import Conversation

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_TERMINAL = re.compile(r"""[.!?)"'”’»:;…]\s*$""")


def _normalise(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.replace(IMAGE_TOKEN, "").lower()))


def repetition_finding(conversation: Conversation, max_sentence_repeats: int) -> Optional[Finding]:
    evidence = []
    questions = Counter(_normalise(t.value) for t in conversation.turns if t.role == HUMAN)
    evidence += [f"question asked {n} times: {q!r}" for q, n in questions.items() if q and n > 1]
    for i, turn in enumerate(conversation.turns):
        if turn.role != GPT:
            continue
        sentences = Counter(s for s in (_normalise(x) for x in _SENTENCE_END.split(turn.value)) if s)
        evidence += [f"turn {i}: sentence repeated {n} times: {s!r}"
                     for s, n in sentences.items() if n > max_sentence_repeats]
    return Finding(REPETITION, "; ".join(evidence)) if evidence else None


def truncation_finding(conversation: Conversation) -> Optional[Finding]:
    cut = [f"turn {i} ends mid-sentence: ...{t.value.strip()[-40:]!r}"
           for i, t in enumerate(conversation.turns)
           if t.role == GPT and t.value.strip() and not _TERMINAL.search(t.value)]
    return Finding(TRUNCATED, "; ".join(cut)) if cut else None
