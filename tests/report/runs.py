"""Run folders for report tests, written by llavaforge's own shard writers (real file formats)."""

from __future__ import annotations

import json
from typing import Any, Optional

import fsspec

from llavaforge.schemas.record import (Annotations, Caption, Conversation, DetectedObject, ImageRecord, OcrText,
                                       Reject, Tag, Turn)
from llavaforge.schemas.layout import STATS_FILE
from llavaforge.storage import join
from llavaforge.transforms.write import build_stats, write_image_shard, write_reject_shard
from tests.conftest import make_record


def conversation(task: str, *pairs: tuple[str, str], flags: tuple[str, ...] = ()) -> Conversation:
    turns = []
    for i, (question, answer) in enumerate(pairs):
        turns += [Turn("human", ("<image>\n" if i == 0 else "") + question), Turn("gpt", answer)]
    return Conversation(task=task, turns=turns, backend="openai", model="served", prompt_version=f"{task}-v1",
                        tokens_in=100, tokens_out=20, seed=1, flags=list(flags))


def image(i: int, *conversations: Conversation, objects: tuple[str, ...] = (), tags: tuple[str, ...] = (),
          ocr: tuple[str, ...] = (), source: tuple[str, ...] = (), caption: Optional[str] = None) -> ImageRecord:
    record = make_record(key=f"{i:032x}", seed=i, member=f"{i}.jpg", annotations=Annotations(
        captions=[Caption(caption, "blip")] if caption else [],
        objects=[DetectedObject(label, 0.9, [0.1, 0.2, 0.5, 0.8], "detr") for label in objects],
        tags=[Tag(label, 0.5, "clip") for label in tags],
        ocr=[OcrText(text, 0.9, [0.0, 0.0, 1.0, 0.1], "rapidocr") for text in ocr]))
    record.source.texts = list(source)
    return record.replace(conversations=list(conversations))


def write_run(prefix: str, shards: list[list[ImageRecord]], rejects: list[Reject] = (),
              inputs: Optional[int] = None, **stats_fields: Any) -> dict[str, Any]:
    """Each inner list becomes one samples shard; stats.json as the writer builds it."""
    image_summaries = [write_image_shard(prefix, index, records) for index, records in enumerate(shards)]
    reject_summaries = [write_reject_shard(prefix, 0, list(rejects))] if rejects else []
    written = sum(len(records) for records in shards)
    counted = written + sum(1 for r in rejects if r.task is None)
    stats = build_stats(counted if inputs is None else inputs, image_summaries, reject_summaries,
                        {"run_id": "test-run", "recipe_hash": "abc", "preset": None,
                         "started_at": 1000.0, "finished_at": 1010.0, **stats_fields})
    with fsspec.open(join(prefix, STATS_FILE), "w") as f:
        json.dump(stats, f)
    return stats
