"""LLaVA's training format: records of {id, image, conversations}, and its validator."""

from __future__ import annotations

from typing import Any, Iterable, Optional

from llavaforge.schemas.layout import image_name
from llavaforge.schemas.record import Conversation, ImageRecord, Turn

IMAGE_TOKEN = "<image>"
HUMAN = "human"
GPT = "gpt"


def sample_id(key: str, task: Optional[str]) -> str:
    return key if task is None else f"{key}_{task}"


def turns_to_json(turns: Iterable[Turn]) -> list[dict[str, str]]:
    return [{"from": t.role, "value": t.value} for t in turns]


def llava_records(record: ImageRecord) -> list[dict[str, Any]]:
    """The LLaVA records of one image: one per conversation; none for an image without
    conversations (a curation-only run), since LLaVA's training code cannot take an empty one.
    A conversation a check flagged (written when `write.flagged: include`) carries `flags`."""
    image = image_name(record.key, record.image.format)
    records = []
    for c in record.conversations:
        entry = {"id": sample_id(record.key, c.task), "image": image, "conversations": turns_to_json(c.turns)}
        if c.flags:
            entry["flags"] = list(c.flags)
        records.append(entry)
    return records


def turn_errors(turns: list[Turn]) -> list[str]:
    """Why a list of turns is not valid LLaVA; empty when it is.

    `<image>` exactly once, at the start of the first human turn; roles alternate
    human, gpt, ... and end with gpt; no empty values.
    """
    errors = []
    if not turns:
        return ["no turns"]
    for i, t in enumerate(turns):
        expected = HUMAN if i % 2 == 0 else GPT
        if t.role != expected:
            errors.append(f"turn {i}: role {t.role!r}, expected {expected!r}")
        if not isinstance(t.value, str) or not t.value.strip():
            errors.append(f"turn {i}: empty value")
    if turns[-1].role != GPT:
        errors.append("last turn is not from gpt")
    total = sum(t.value.count(IMAGE_TOKEN) for t in turns if isinstance(t.value, str))
    if total != 1:
        errors.append(f"{IMAGE_TOKEN} appears {total} times, expected once")
    elif not turns[0].value.startswith(IMAGE_TOKEN):
        errors.append(f"{IMAGE_TOKEN} is not at the start of the first human turn")
    return errors


def conversation_errors(conversation: Conversation) -> list[str]:
    return turn_errors(conversation.turns)


def llava_record_errors(item: Any) -> list[str]:
    """Why a decoded LLaVA JSON record is malformed (by the rules LLaVA's training code relies
    on); empty when it is valid. An optional `flags` list of strings is allowed."""
    if not isinstance(item, dict):
        return ["record is not an object"]
    errors = []
    if not isinstance(item.get("id"), str) or not item["id"]:
        errors.append("missing id")
    if not isinstance(item.get("image"), str) or not item["image"]:
        errors.append("missing image")
    conversations = item.get("conversations")
    if not isinstance(conversations, list):
        return errors + ["conversations is not a list"]
    if not isinstance(item.get("flags", []), list):
        errors.append("flags is not a list")
    turns = []
    for i, turn in enumerate(conversations):
        if not isinstance(turn, dict) or set(turn) != {"from", "value"}:
            return errors + [f"turn {i} is not {{from, value}}"]
        turns.append(Turn(role=turn["from"], value=turn["value"]))
    return errors + turn_errors(turns)
