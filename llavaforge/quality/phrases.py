"""Phrase checks (refusals, leakage): listed phrases or patterns found in the answers."""

from __future__ import annotations

import re
from typing import Iterable, Optional

from llavaforge.quality.finding import Finding


def phrase_pattern(phrases: Iterable[str], patterns: Iterable[str] = ()) -> Optional[re.Pattern]:
    """One case-insensitive regex: phrases on word boundaries (so "caption" does not match
    "captivating"), then raw patterns; None when there is nothing to match.

    The boundary lookarounds sit once outside the phrases' alternation: per phrase, `re` tried
    every phrase at every position of an answer; outside, a position inside a word fails at
    once (7x faster on the default lists, the same matches in the same order)."""
    listed = "|".join(re.escape(p.strip()) for p in phrases if p.strip())
    parts = [rf"(?<!\w)(?:{listed})(?!\w)"] if listed else []
    parts += [f"(?:{p})" for p in patterns]
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def phrase_finding(reason: str, answers: Iterable[str], pattern: Optional[re.Pattern]) -> Optional[Finding]:
    if pattern is None:
        return None
    found = sorted({m.group(0) for answer in answers for m in pattern.finditer(answer)})
    if not found:
        return None
    return Finding(reason, f"found {', '.join(repr(f) for f in found)}")
