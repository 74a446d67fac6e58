"""The LLM tests' fault-injecting OpenAI-compatible server, for requests whose last user message
is a list of content parts (text and `image_url`): the script marker is looked for in the text
parts, and the images each request carried can be read back as bytes."""

from __future__ import annotations

import base64
import re
from typing import Any

from tests.models.llm.fault_server import FaultServer

DATA_URL = re.compile(r"^data:(image/[a-z]+);base64,([A-Za-z0-9+/=]+)$")


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content if part.get("type") == "text")


def images_of(content: Any) -> list[tuple[str, bytes]]:
    """(MIME type, bytes) of every image part; a part that is not a base64 data URL fails the test."""
    found = []
    for part in content if isinstance(content, list) else []:
        if part.get("type") == "image_url":
            match = DATA_URL.match(part["image_url"]["url"])
            assert match, f"image part is not a base64 data URL: {part['image_url']['url'][:80]}"
            found.append((match.group(1), base64.b64decode(match.group(2))))
    return found


class ImageFaultServer(FaultServer):
    def step(self, body: dict[str, Any]) -> tuple:
        text = text_of(body["messages"][-1]["content"])
        return super().step({**body, "messages": [{"role": "user", "content": text}]})

    def images(self) -> list[tuple[str, bytes]]:
        """Every image sent, in arrival order."""
        return [image for body in self.bodies for image in images_of(body["messages"][-1]["content"])]
