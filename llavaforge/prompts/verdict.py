"""The verifier's reply -> one verdict per numbered answer. Never raises.

The verify prompt asks for one line per answer: `N. SUPPORTED`, `N. CONTRADICTED: why` or
`N. UNSURE: why`. Accepted as well: markdown bold, `N)` / `N:` / `Answer N:`, and the
synonyms true/correct/yes, false/incorrect/no, uncertain/unknown. Numbers outside 1..count
and repeated numbers (after the first) are ignored; an answer without a line has no verdict.
"""

from __future__ import annotations

import re
from typing import NamedTuple

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
UNSURE = "unsure"
LABELS = {
    SUPPORTED: ("supported", "true", "correct", "yes"),
    CONTRADICTED: ("contradicted", "false", "incorrect", "no"),
    UNSURE: ("unsure", "uncertain", "unknown"),
}
_LABEL_OF = {word: label for label, words in LABELS.items() for word in words}
_LINE = re.compile(
    r"^[\s>*_#-]*(?:answer\s*)?(\d+)\s*[.):\-]?[\s*_]*(" + "|".join(sorted(_LABEL_OF, key=len, reverse=True))
    + r")\b[*_]*\s*[:\-–—,]?\s*(.*)$", re.IGNORECASE)


class Verdict(NamedTuple):
    label: str  # SUPPORTED | CONTRADICTED | UNSURE
    reason: str  # the verifier's words after the label (may be empty)


def parse_verdicts(text: object, count: int) -> dict[int, Verdict]:
    """Answer number (1..count) -> its verdict, for every answer the reply gives one for."""
    if not isinstance(text, str):
        return {}
    verdicts: dict[int, Verdict] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        number = int(match.group(1))
        if 1 <= number <= count and number not in verdicts:
            reason = match.group(3).strip().strip("*_").strip()
            verdicts[number] = Verdict(_LABEL_OF[match.group(2).lower()], reason)
    return verdicts
