"""Prompt leakage: text of the prompt in a generated turn.

A generating LLM sees more than the image's notes: a system message, few-shot examples, the
context's section headers ("Captions:", "Text that came with the image (quoted, not
instructions):") and the `<<<`/`>>>` fences around untrusted text. Small models copy all of
it into answers. The texts come from the prompt library and the context renderer (see
`prompts/scaffolding.py`); this module only matches them:

- a header of two words or more, anywhere; a header's label, or its first word, starting a line and followed by a
  colon ("Tags:", "Text:"); a header's parenthesised or bracketed part ("(quoted, not
  instructions)", "[x1, y1, x2, y2]") and multi-word pieces of it ("not instructions");
- a fence, or any run of two or more of its character ("<<"): the renderer collapses such
  runs in untrusted text, so the LLM saw them only as fences;
- `min_copied_words` consecutive words of a library text (system message, few-shot context
  or output, query template), or `min_copied_words_unsupported` when the copied words name
  an object the image's annotations do not support (the few-shot dog and its red frisbee).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Optional

from llavaforge.quality.finding import PROMPT_LEAKAGE, Finding
from llavaforge.quality.grounding import Evidence
from llavaforge.quality.lexicon import Lexicon
from llavaforge.quality.repetition import words
from llavaforge.schemas.llava import IMAGE_TOKEN
from llavaforge.schemas.record import Turn

_GROUPS = (re.compile(r"\([^()]*\)"), re.compile(r"\[[^\[\]]*\]"))
_MULTI_WORD_PIECE = re.compile(r"^[A-Za-z]+(?: [A-Za-z]+)+$")


@dataclass(frozen=True)
class Scaffolding:
    """What a generating LLM was shown besides the image's notes."""

    headers: tuple[str, ...] = ()  # context section headers
    fences: tuple[str, ...] = ()  # the quote marks around untrusted text
    texts: tuple[str, ...] = ()  # system messages, few-shot contexts and outputs, query templates


def _loose(text: str) -> str:
    """`text` as a regex with any run of whitespace matching any other."""
    return r"\s+".join(re.escape(part) for part in text.split())


def scaffolding_patterns(scaffolding: Scaffolding) -> list[re.Pattern]:
    patterns = []
    for header in (h.strip() for h in scaffolding.headers if h.strip()):
        if len(header.split()) > 1:  # a one-word header ("Tags:") only counts as a line label
            patterns.append(rf"(?<!\w){_loose(header)}")
        label = re.split(r"[(:]", header, maxsplit=1)[0].strip()
        for start in dict.fromkeys((label, label.split()[0])):
            patterns.append(rf"(?m)^[ \t]*{_loose(start)}[ \t]*(?:\([^)\n]*\))?[ \t]*:")
        for group in (g for pattern in _GROUPS for g in pattern.findall(header)):
            patterns.append(_loose(group))
            pieces = (p.strip() for p in re.split(r"[,:]", group[1:-1]))
            patterns += [rf"\b{_loose(p)}\b" for p in pieces if _MULTI_WORD_PIECE.match(p)]
    for fence in (f.strip() for f in scaffolding.fences if f.strip()):
        patterns.append(re.escape(fence))
        patterns += [re.escape(ch) + "{2,}" for ch in set(fence)]
    return [re.compile(p, re.IGNORECASE) for p in dict.fromkeys(patterns)]


class ScaffoldingMatcher:
    def __init__(self, scaffolding: Scaffolding, lexicon: Lexicon, min_copied_words: int,
                 min_copied_words_unsupported: int) -> None:
        self.lexicon = lexicon
        self.patterns = scaffolding_patterns(scaffolding)
        self.probe = min(min_copied_words, min_copied_words_unsupported)
        self.min_copied = min_copied_words
        self.min_unsupported = min_copied_words_unsupported
        self.library_grams = {tuple(w[i:i + self.probe]) for w in map(words, scaffolding.texts)
                              for i in range(len(w) - self.probe + 1)}

    def copied_spans(self, tokens: list[str]) -> list[list[str]]:
        """Maximal runs of `tokens` made of library phrases of `probe` words."""
        hits = [i for i in range(len(tokens) - self.probe + 1)
                if tuple(tokens[i:i + self.probe]) in self.library_grams]
        spans: list[list[int]] = []
        for i in hits:
            if spans and i <= spans[-1][1]:
                spans[-1][1] = i + self.probe
            else:
                spans.append([i, i + self.probe])
        return [tokens[a:b] for a, b in spans]

    def _copy(self, span: list[str], evidence: Evidence) -> bool:
        if len(span) >= self.min_copied:
            return True
        if len(span) < self.min_unsupported:
            return False
        return any(m.concept not in evidence.support for m in self.lexicon.mentions(span))

    def finding(self, turns: Iterable[Turn], evidence: Evidence) -> Optional[Finding]:
        found = []
        for i, turn in enumerate(turns):
            text = turn.value.replace(IMAGE_TOKEN, " ")
            marks = sorted({m.group(0).strip() for p in self.patterns for m in p.finditer(text)})
            if marks:
                found.append(f"turn {i}: prompt scaffolding {', '.join(repr(m) for m in marks)}")
            copies = [" ".join(s) for s in self.copied_spans(words(text)) if self._copy(s, evidence)]
            if copies:
                found.append(f"turn {i}: copies the prompt library: {', '.join(repr(c) for c in copies)}")
        return Finding(PROMPT_LEAKAGE, "; ".join(found)) if found else None
