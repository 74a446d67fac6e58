"""One interface for every vision-language model backend: chat messages + one image in, text out.

A `VlmRequest` is text chat messages and the image; every backend puts the image before the
text of the last user message (as an image part: a placeholder for the hf backend's processor,
a data URL for vLLM and OpenAI-compatible endpoints). An engine is one loaded model (or one
endpoint client); what a role asks for per request (prompt, max_new_tokens, sampling) travels
with the call, not with the engine. Loading and sharing engines, and the Beam handler of a
role, are in `models/vlm/handler.py`.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple, Sequence

from llavaforge.config.generation import SamplingConfig
from llavaforge.models.llm.base import Generation, Message
from llavaforge.schemas.record import ImageInfo


class VlmRequest(NamedTuple):
    messages: tuple[Message, ...]  # text only; the image goes before the text of the last user message
    image: ImageInfo
    seed: int = 0  # sampling seed (ignored when decoding greedily)
    tag: Any = None  # caller data carried through to the result untouched


class GenerationSettings(NamedTuple):
    """What a role asks of a shared engine per call."""

    max_new_tokens: int
    sampling: SamplingConfig
    namespace: str = "vlm"  # the role's Beam metrics namespace, where engines count what they reuse


def chat_messages(request: VlmRequest, image_part: dict[str, Any], parts_everywhere: bool) -> list[dict[str, Any]]:
    """The request as chat messages, `image_part` first in the content parts of the last user
    message. `parts_everywhere`: every content a list of parts (what VLM chat templates such as
    SmolVLM's iterate over); else the other messages keep plain text (what any OpenAI-compatible
    server accepts)."""
    last_user = max(i for i, m in enumerate(request.messages) if m["role"] == "user")
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(request.messages):
        text = [{"type": "text", "text": message["content"]}] if message["content"] else []
        if i == last_user:
            content: Any = [image_part, *text]
        else:
            content = text if parts_everywhere else message["content"]
        messages.append({"role": message["role"], "content": content})
    return messages


class VlmEngine:
    """A loaded model (or endpoint client). Subclasses implement `generate`; results keep the
    request order. Engines that are not safe to call from several threads (`thread_safe =
    False`) run one batch at a time."""

    thread_safe = False

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def generate(self, requests: Sequence[VlmRequest], settings: GenerationSettings) -> list[Generation]:
        raise NotImplementedError

    def run(self, requests: Sequence[VlmRequest], settings: GenerationSettings) -> list[Generation]:
        if self.thread_safe:
            generations = self.generate(requests, settings)
        else:
            with self._lock:
                generations = self.generate(requests, settings)
        if len(generations) != len(requests):
            raise RuntimeError(f"{type(self).__name__} returned {len(generations)} results for {len(requests)} requests")
        return generations
