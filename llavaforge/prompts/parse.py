"""LLM output -> LLaVA turns, or the reason it could not be read. Never raises.

Accepted: a JSON list of turns (`from`/`value`, `role`/`content`, or `question`/`answer`
objects, possibly inside `{"conversations": [...]}`), and labelled blocks
(`Question: ... === Answer: ...`, `Q:`/`A:`, `User:`/`Assistant:`, `Human:`/`GPT:`, with
markdown bold, numbering, list dashes), with or without markdown code fences. Text before
the first label is ignored; a trailing question without an answer (output cut at
`max_new_tokens`) is dropped. `<image>` is removed from generated text and inserted exactly
once, at the start of the first human turn. Every turn's whitespace is normalised
(`normalise_text`): no hard line breaks inside sentences.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple, Optional

from llavaforge.schemas.llava import GPT, HUMAN, IMAGE_TOKEN, turn_errors
from llavaforge.schemas.record import Turn

ROLE_NAMES = {
    HUMAN: ("human", "user", "question", "q", "person"),
    GPT: ("gpt", "assistant", "answer", "a", "ai", "model"),
}
_ROLE_OF = {name: role for role, names in ROLE_NAMES.items() for name in names}
_LABEL = re.compile(
    r"^[\s>*_#-]*(?:\d+[.)]\s*)?(" + "|".join(sorted(_ROLE_OF, key=len, reverse=True)) +
    r")\s*\d*\s*[*_]*\s*:\s*[*_]*[ \t]*(.*)$", re.IGNORECASE)
_SEPARATOR = re.compile(r"^\s*={3,}\s*$")
_FENCE = re.compile(r"^\s*```[\w-]*\s*$")
_JSON_ROLE_KEYS = ("from", "role", "speaker")
_JSON_VALUE_KEYS = ("value", "content", "text")


class Parsed(NamedTuple):
    turns: list[Turn]  # valid LLaVA turns; empty when `error` is set
    error: str = ""


_LIST_ITEM = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")
_INLINE_SPACES = re.compile(r"[ \t\u00a0]+")


def normalise_text(text: str) -> str:
    """Whitespace as a trainer wants it, meaning unchanged: a line break inside a sentence
    becomes a space ("a very\nimportant cat" -> "a very important cat"), runs of spaces become
    one; paragraph breaks (blank lines) and list items (-, *, 1.) keep their own lines."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        lines: list[str] = []
        for line in (_INLINE_SPACES.sub(" ", raw).strip() for raw in block.split("\n")):
            if not line:
                continue
            if lines and not _LIST_ITEM.match(line):
                lines[-1] = f"{lines[-1]} {line}"
            else:
                lines.append(line)
        if lines:
            paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _clean_value(value: str) -> str:
    return normalise_text(value.replace(IMAGE_TOKEN, ""))


def strip_fences(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not _FENCE.match(line))


def _json_turn_items(item: Any) -> list[tuple[str, Any]]:
    if not isinstance(item, dict):
        return []
    lowered = {str(k).lower(): v for k, v in item.items()}
    if "question" in lowered and "answer" in lowered:
        return [(HUMAN, lowered["question"]), (GPT, lowered["answer"])]
    role = next((lowered[k] for k in _JSON_ROLE_KEYS if k in lowered), None)
    value = next((lowered[k] for k in _JSON_VALUE_KEYS if k in lowered), None)
    if isinstance(role, str) and role.strip().lower() in _ROLE_OF:
        return [(_ROLE_OF[role.strip().lower()], value)]
    return []


def _json_turns(text: str) -> Optional[list[tuple[str, str]]]:
    """Turns from the first JSON list (or object with a turn list) in `text`, else None."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", text):
        try:
            data, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(data, dict):
            data = next((data[k] for k in ("conversations", "conversation", "turns") if isinstance(data.get(k), list)), None)
        if not isinstance(data, list):
            continue
        turns = [(role, value) for item in data for role, value in _json_turn_items(item)]
        if turns:
            return [(role, value if isinstance(value, str) else "") for role, value in turns]
    return None


def _labelled_turns(text: str) -> list[tuple[str, str]]:
    segments: list[tuple[str, list[str]]] = []
    current: Optional[tuple[str, list[str]]] = None
    for line in text.splitlines():
        if _SEPARATOR.match(line):
            current = None
            continue
        label = _LABEL.match(line)
        if label:
            current = (_ROLE_OF[label.group(1).lower()], [label.group(2)])
            segments.append(current)
        elif current is not None:
            current[1].append(line)
    return [(role, "\n".join(lines)) for role, lines in segments]


def _alternating_prefix(turns: list[tuple[str, str]]) -> list[Turn]:
    """The longest run human, gpt, human, gpt ... with non-empty values, ending with gpt."""
    kept: list[Turn] = []
    for i, (role, value) in enumerate(turns):
        value = _clean_value(value)
        if role != (HUMAN if i % 2 == 0 else GPT) or not value:
            break
        kept.append(Turn(role=role, value=value))
    return kept[: len(kept) - len(kept) % 2]


def _with_image_token(turns: list[Turn]) -> list[Turn]:
    first = Turn(role=turns[0].role, value=f"{IMAGE_TOKEN}\n{turns[0].value}")
    return [first] + turns[1:]


def _parse(text: str, fmt: str, instruction: Optional[str]) -> Parsed:
    cleaned = strip_fences(text)
    if fmt == "answer":
        if not instruction or not _clean_value(instruction):
            return Parsed([], "no instruction for an answer task")
        labelled = _labelled_turns(cleaned)
        answers = [value for role, value in labelled if role == GPT]
        answer = _clean_value(answers[0] if answers else cleaned)
        if not answer:
            return Parsed([], "empty output")
        turns = [Turn(HUMAN, _clean_value(instruction)), Turn(GPT, answer)]
    else:
        candidates = _json_turns(cleaned)
        turns = _alternating_prefix(candidates) if candidates else []
        if not turns:
            turns = _alternating_prefix(_labelled_turns(cleaned))
        if not turns:
            return Parsed([], "no question/answer turns found")
        if fmt == "pair":
            turns = turns[:2]
    turns = _with_image_token(turns)
    errors = turn_errors(turns)
    return Parsed([], "; ".join(errors)) if errors else Parsed(turns)


def answer_values(text: str) -> list[str]:
    """The gpt-side texts of an output: its labelled answers, else the whole text."""
    answers = [v for role, v in _labelled_turns(strip_fences(text)) if role == GPT]
    return answers or [text]


def parse_output(text: Any, fmt: str, instruction: Optional[str] = None) -> Parsed:
    """Turns from one LLM output for a task of format `fmt` (turns | pair | answer)."""
    if not isinstance(text, str) or not text.strip():
        return Parsed([], "empty output")
    try:
        return _parse(text, fmt, instruction)
    except Exception as e:  # noqa: BLE001 -- any surprise in model text is a reject, not a crash
        return Parsed([], f"parser error {type(e).__name__}: {e}")
