"""Degenerate generation: loops and answers cut off by the token limit.

Small LLMs (and any LLM at a low `max_new_tokens`) repeat a sentence until the limit, repeat
a phrase inside one sentence ("a cat that is a cat that is ..."), give the same answer to
two questions, ask the same question twice, or stop mid-sentence; none of that is fit for
training. Loops are found in words (lower case, punctuation ignored), so "PWNED:\\nPWNED:"
and "a bomb, a bomb" are loops like any other:

- a sentence said more than `max_sentence_repeats` times in one answer;
- a phrase of up to `MAX_LOOP_UNIT` words that follows itself more than
  `max_consecutive_repeats` times ("PWNED PWNED PWNED", "a bomb, a bomb, a bomb");
- phrase loops spread over an answer: more than `max_phrase_coverage` of its words lie in
  `phrase_words`-word phrases said more than once (a phrase said twice must hold two words
  that are not function words, so "the dog on the left ... the dog on the right" is not a
  loop), or any phrase of `long_phrase_words` words said twice;
- two questions, or two answers of at least `MIN_SIMILAR_ANSWER_WORDS` words, of one
  conversation with a word-sequence similarity of at least `max_turn_similarity`.
"""

from __future__ import annotations

import re
from collections import Counter
from difflib import SequenceMatcher
from itertools import combinations
from typing import Optional

from llavaforge.config.check import RepetitionCheck
from llavaforge.quality.finding import REPETITION, TRUNCATED, Finding
from llavaforge.quality.text import STOPWORDS
from llavaforge.schemas.llava import GPT, HUMAN, IMAGE_TOKEN
from llavaforge.schemas.record import Conversation

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_TERMINAL = re.compile(r"""[.!?)"'”’»:;…]\s*$""")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
MAX_LOOP_UNIT = 8
MIN_SIMILAR_ANSWER_WORDS = 4


def words(text: str) -> list[str]:
    return _WORD.findall(text.replace(IMAGE_TOKEN, " ").lower())


def _normalise(text: str) -> str:
    return " ".join(words(text))


def consecutive_loop(tokens: list[str], max_repeats: int) -> Optional[tuple[str, int]]:
    """The shortest phrase (up to `MAX_LOOP_UNIT` words) that follows itself more than
    `max_repeats` times, with its count; None when there is none."""
    n = len(tokens)
    for unit in range(1, MAX_LOOP_UNIT + 1):
        # same[i]: how many tokens from i on equal the token `unit` further on. The phrase at
        # `start` follows itself `same[start] // unit` times: one pass per unit instead of
        # comparing slices at every start.
        same = [0] * (n + 1)
        for i in range(n - unit - 1, -1, -1):
            if tokens[i] == tokens[i + unit]:
                same[i] = same[i + 1] + 1
        for start in range(n - unit * (max_repeats + 1) + 1):
            if same[start] >= unit * max_repeats:
                return " ".join(tokens[start:start + unit]), same[start] // unit + 1
    return None


def phrase_coverage(tokens: list[str], phrase_words: int) -> float:
    """The share of `tokens` that lie in a `phrase_words`-word phrase said more than once (twice
    only counts for a phrase with two or more content words)."""
    grams = [tuple(tokens[i:i + phrase_words]) for i in range(len(tokens) - phrase_words + 1)]
    counts = Counter(grams)
    covered = [False] * len(tokens)
    for i, gram in enumerate(grams):
        n = counts[gram]
        if n > 2 or (n == 2 and sum(t not in STOPWORDS for t in gram) >= 2):
            covered[i:i + phrase_words] = [True] * phrase_words
    return sum(covered) / len(tokens) if tokens else 0.0


def repeated_long_phrase(tokens: list[str], length: int) -> Optional[str]:
    seen = set()
    for i in range(len(tokens) - length + 1):
        gram = tuple(tokens[i:i + length])
        if gram in seen:
            return " ".join(gram)
        seen.add(gram)
    return None


def _answer_loops(tokens: list[str], config: RepetitionCheck) -> list[str]:
    loop = consecutive_loop(tokens, config.max_consecutive_repeats)
    if loop is not None:
        return [f"{loop[0]!r} {loop[1]} times in a row"]
    if len(tokens) >= config.phrase_words * 2:
        coverage = phrase_coverage(tokens, config.phrase_words)
        if coverage > config.max_phrase_coverage:
            return [f"{coverage:.0%} of its words are in repeated phrases"]
    long_phrase = repeated_long_phrase(tokens, config.long_phrase_words)
    return [f"phrase said twice: {long_phrase!r}"] if long_phrase else []


def _similar(a: list[str], b: list[str], threshold: float) -> bool:
    return SequenceMatcher(None, a, b, autojunk=False).ratio() >= threshold


def _repeated_turns(turns: list[tuple[int, list[str]]], what: str, threshold: float, min_words: int) -> list[str]:
    """Identical turns with their count, then near-identical pairs."""
    texts = Counter(" ".join(t) for _, t in turns if len(t) >= min_words)
    evidence = [f"{what} {n} times: {text!r}" for text, n in texts.items() if n > 1]
    for (i, a), (j, b) in combinations(turns, 2):
        if min(len(a), len(b)) >= min_words and a != b and _similar(a, b, threshold):
            evidence.append(f"turns {i} and {j}: nearly the same {what.split()[0]}: {' '.join(b)!r}")
    return evidence


def repetition_finding(conversation: Conversation, config: RepetitionCheck) -> Optional[Finding]:
    turns = [(i, t.role, words(t.value)) for i, t in enumerate(conversation.turns)]
    evidence = _repeated_turns([(i, w) for i, role, w in turns if role == HUMAN], "question asked",
                               config.max_turn_similarity, 1)
    evidence += _repeated_turns([(i, w) for i, role, w in turns if role == GPT], "answer given",
                                config.max_turn_similarity, MIN_SIMILAR_ANSWER_WORDS)
    for i, turn in enumerate(conversation.turns):
        if turn.role != GPT:
            continue
        sentences = Counter(s for s in (_normalise(x) for x in _SENTENCE_END.split(turn.value)) if s)
        repeated = [f"turn {i}: sentence repeated {n} times: {s!r}"
                    for s, n in sentences.items() if n > config.max_sentence_repeats]
        evidence += repeated or [f"turn {i}: {loop}" for loop in _answer_loops(words(turn.value), config)]
    return Finding(REPETITION, "; ".join(evidence)) if evidence else None


def truncation_finding(conversation: Conversation) -> Optional[Finding]:
    cut = [f"turn {i} ends mid-sentence: ...{t.value.strip()[-40:]!r}"
           for i, t in enumerate(conversation.turns)
           if t.role == GPT and t.value.strip() and not _TERMINAL.search(t.value)]
    return Finding(TRUNCATED, "; ".join(cut)) if cut else None
