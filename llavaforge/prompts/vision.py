"""The prompts of the vision-language model roles that are not task types: the dense caption
(`annotate.dense_captioner`) and the verifier (`verify`).

One YAML file each: packaged in `prompts/vision/`, or the file a recipe names. Versioned like
the task prompts (`<kind>-v<version>-<content hash>`), and part of the recipe hash. The image
itself is not in the messages: every backend puts it before the text of the last user message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence

import yaml
from pydantic import Field, ValidationError, model_validator

from llavaforge.config.base import StrictModel
from llavaforge.config.prompts import vision_prompt_path
from llavaforge.prompts.library import PromptError

ANSWERS_SLOT = "{answers}"
REQUIRED_SLOTS = {"dense_caption": (), "verify": (ANSWERS_SLOT,)}
VisionKind = Literal["dense_caption", "verify"]


class VisionPromptFile(StrictModel):
    kind: VisionKind = Field(description="Which role the file is for: dense_caption or verify.")
    version: int = Field(ge=1, description="Bumped by hand on meaningful edits (a content hash is added anyway).")
    system: str = Field(description="The system message: the role's instruction, shared by every request.")
    query: str = Field(description="The text after the image in the user message (verify: must contain `{answers}`).")

    @model_validator(mode="after")
    def _has_slots(self) -> "VisionPromptFile":
        missing = [slot for slot in REQUIRED_SLOTS[self.kind] if slot not in self.query]
        if missing:
            raise ValueError(f"`query` must contain {', '.join(missing)}")
        return self


@dataclass(frozen=True)
class VisionPrompt:
    spec: VisionPromptFile
    prompt_version: str  # <kind>-v<version>-<content hash>

    def messages(self, answers: str = "") -> list[dict[str, str]]:
        query = self.spec.query.replace(ANSWERS_SLOT, answers.strip()).strip()
        return [{"role": "system", "content": self.spec.system.strip()}, {"role": "user", "content": query}]


def load_vision_prompt(kind: VisionKind, override: Optional[str] = None) -> VisionPrompt:
    """The prompt file of role `kind`: `override` when given, else the packaged one."""
    path = vision_prompt_path(kind, override)
    try:
        data = Path(path).read_bytes()
        raw = yaml.safe_load(data)
    except OSError as e:
        raise PromptError(f"prompt file {path}: {e}") from e
    except yaml.YAMLError as e:
        raise PromptError(f"prompt file {path} is not valid YAML: {e}") from e
    try:
        spec = VisionPromptFile.model_validate(raw)
    except ValidationError as e:
        fields = "; ".join(f"`{'.'.join(str(p) for p in err['loc']) or '(file)'}`: {err['msg']}" for err in e.errors())
        raise PromptError(f"prompt file {path}: {fields}") from e
    if spec.kind != kind:
        raise PromptError(f"prompt file {path}: `kind` is {spec.kind!r}, expected {kind!r}")
    return VisionPrompt(spec, f"{kind}-v{spec.version}-{hashlib.sha256(data).hexdigest()[:8]}")


def _clipped(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def render_answers(pairs: Sequence[tuple[str, str]], max_chars: int) -> str:
    """Numbered (question, answer) pairs as the verifier reads them; each text cut at `max_chars`."""
    blocks = []
    for number, (question, answer) in enumerate(pairs, start=1):
        blocks.append(f"{number}. Question: {_clipped(question, max_chars)}\n"
                      f"   Answer: {_clipped(answer, max_chars)}")
    return "\n".join(blocks)
