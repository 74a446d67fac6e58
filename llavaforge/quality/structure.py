"""Structure: is a conversation valid LLaVA of the right shape for its task type?"""

from __future__ import annotations

import re
from typing import Optional

from llavaforge.quality.finding import STRUCTURE, Finding
from llavaforge.schemas.llava import GPT, IMAGE_TOKEN, turn_errors
from llavaforge.schemas.record import Conversation
from llavaforge.config.check import StructureCheck


def _length_error(what: str, text: str, low: int, high: int) -> Optional[str]:
    n = len(text.strip())
    if n < low:
        return f"{what} has {n} characters, fewer than {low}"
    if n > high:
        return f"{what} has {n} characters, more than {high}"
    return None


def structure_errors(conversation: Conversation, config: StructureCheck,
                     template_patterns: list[re.Pattern]) -> list[str]:
    turns = conversation.turns
    errors = turn_errors(turns)
    pairs = len(turns) // 2
    limits = config.turn_pairs.get(conversation.task)
    if limits is not None and not limits[0] <= pairs <= limits[1]:
        errors.append(f"{pairs} question/answer pairs, {conversation.task} allows {limits[0]}..{limits[1]}")
    answer_low, answer_high = config.answer_chars_by_task.get(
        conversation.task, (config.answer_chars.min, config.answer_chars.max))
    for i, turn in enumerate(turns):
        if turn.role == GPT:
            error = _length_error(f"turn {i}", turn.value, answer_low, answer_high)
        else:
            error = _length_error(f"turn {i}", turn.value.replace(IMAGE_TOKEN, ""),
                                  config.question_chars.min, config.question_chars.max)
        if error:
            errors.append(error)
        for pattern in template_patterns:
            found = pattern.search(turn.value)
            if found:
                errors.append(f"turn {i}: template leftover {found.group(0).strip()!r}")
    total = sum(len(t.value) for t in turns)
    if total > config.max_total_chars:
        errors.append(f"{total} characters in all, more than {config.max_total_chars}")
    return errors


def structure_finding(conversation: Conversation, config: StructureCheck,
                      template_patterns: list[re.Pattern]) -> Optional[Finding]:
    errors = structure_errors(conversation, config, template_patterns)
    return Finding(STRUCTURE, "; ".join(errors)) if errors else None
