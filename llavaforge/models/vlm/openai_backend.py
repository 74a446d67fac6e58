"""`openai` backend for a vision-language model: any OpenAI-compatible chat endpoint that takes
images (vLLM's or SGLang's server, hosted APIs).

The image goes as an `image_url` content part holding a data URL (base64 of the stored bytes,
or of the image downscaled to `max_image_side` and re-encoded as JPEG), before the text of the
last user message. Everything else is the LLM backend's client (`models/llm/openai_backend.py`):
bounded concurrency, retries with backoff on 429/5xx/timeouts/malformed replies, a per-attempt
deadline, same-origin redirects only, a request budget, and the API key read from the
environment variable the recipe names, sent only in the Authorization header.
"""

from __future__ import annotations

from typing import Any, Sequence

from llavaforge.config.vlm import VlmConfig
from llavaforge.models.llm.base import Generation
from llavaforge.models.llm.openai_backend import OpenAiClient, read_api_key
from llavaforge.models.vlm.base import GenerationSettings, VlmEngine, VlmRequest, chat_messages
from llavaforge.models.vlm.images import data_url


def image_url_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


class VlmChatClient(OpenAiClient):
    """The LLM client with a body that carries the image and each role's generation settings."""

    def __init__(self, config: VlmConfig, api_key: Any) -> None:
        super().__init__(config.openai, config.model or "", config.max_new_tokens, config.sampling, api_key)
        self.max_image_side = config.max_image_side

    def body(self, item: tuple[VlmRequest, GenerationSettings]) -> dict[str, Any]:
        request, settings = item
        part = image_url_part(data_url(request.image, self.max_image_side))
        body: dict[str, Any] = {"model": self.model, "messages": chat_messages(request, part, parts_everywhere=False),
                                "max_tokens": settings.max_new_tokens, "temperature": settings.sampling.temperature}
        if settings.sampling.temperature > 0:
            body.update(top_p=settings.sampling.top_p, seed=request.seed)
        return body


class OpenAiVlmEngine(VlmEngine):
    thread_safe = True  # bounded concurrency and the budget are guarded inside the client

    def __init__(self, client: VlmChatClient) -> None:
        super().__init__()
        self.client = client

    @classmethod
    def load(cls, config: VlmConfig, path: str, field: str) -> "OpenAiVlmEngine":
        return cls(VlmChatClient(config, read_api_key(config.openai.api_key_env, f"{field}.openai.api_key_env")))

    def generate(self, requests: Sequence[VlmRequest], settings: GenerationSettings) -> list[Generation]:
        return self.client.complete_all([(request, settings) for request in requests])
