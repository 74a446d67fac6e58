"""What the prompt shows a generating LLM besides the image's notes, for the prompt-leakage
check (`quality/scaffolding.py`): the context headers and fences, and the library's system
messages, few-shot examples and query templates. The `instructions` of `answer` tasks are
left out: they are the human turns of those samples."""

from __future__ import annotations

from llavaforge.prompts.context import (CAPTIONS_HEADER, OBJECTS_HEADER, OCR_HEADER, QUOTE_CLOSE, QUOTE_OPEN,
                                        SOURCE_HEADER, TAGS_PREFIX)
from llavaforge.prompts.library import CONTEXT_SLOT, PromptLibrary
from llavaforge.quality.scaffolding import Scaffolding

CONTEXT_HEADERS = (CAPTIONS_HEADER, OBJECTS_HEADER, TAGS_PREFIX, OCR_HEADER, SOURCE_HEADER)


def prompt_scaffolding(library: PromptLibrary) -> Scaffolding:
    texts: list[str] = []
    for task in library.tasks.values():
        spec = task.spec
        texts += [spec.system, spec.query.replace(CONTEXT_SLOT, "\n")]
        for shot in spec.examples:
            texts += [shot.context, shot.output]
    return Scaffolding(headers=CONTEXT_HEADERS, fences=(QUOTE_OPEN, QUOTE_CLOSE),
                       texts=tuple(t for t in texts if t.strip()))
