"""The prompt library: one YAML file per task type, loaded and versioned.

A task file holds a system message, a user-message template with `{context}`, hand-written
few-shot examples (context -> output) and how to read the output (`format`). Adding a task
type is adding a file; pointing the recipe at another folder swaps the whole library.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import Field, ValidationError, model_validator

from llavaforge.config.base import StrictModel
from llavaforge.config.prompts import files_fingerprint, prompt_files, prompt_folder

CONTEXT_SLOT = "{context}"

OutputFormat = Literal["turns", "pair", "answer"]


class PromptError(ValueError):
    """A prompt file that does not load; the message names the file and the field."""


class FewShotExample(StrictModel):
    context: str = Field(description="An example image description, as context rendering writes it.")
    output: str = Field(description="What the LLM should answer for that description.")


class VisionTaskPrompt(StrictModel):
    system: str = Field(description="The system message when a vision-language model writes the task seeing the image.")
    query: str = Field(
        description="The text after the image in the user message; an optional `{context}` is replaced by the "
                    "image's annotations (as the LLM gets them).")


class PromptFile(StrictModel):
    task: str = Field(description="Task type name; must match the file name (without .yaml).")
    version: int = Field(ge=1, description="Bumped by hand on meaningful edits (a content hash is added anyway).")
    format: OutputFormat = Field(
        description="turns = one or more question/answer pairs; pair = exactly one (the first); "
                    "answer = the output is the answer to an instruction from `instructions`.")
    system: str = Field(description="The system message.")
    query: str = Field(default=CONTEXT_SLOT, description="User message template; `{context}` is replaced.")
    examples: list[FewShotExample] = Field(default_factory=list, description="Few-shot examples, in order.")
    instructions: list[str] = Field(
        default_factory=list, description="Human-turn phrasings for `answer` tasks (one picked per image).")
    vision: Optional[VisionTaskPrompt] = Field(
        default=None,
        description="The prompt of this task in vlm mode (synthesize.task_modes): the model sees the image, so "
                    "it gets no few-shot examples; the output format and its parser are the same.")

    @model_validator(mode="after")
    def _coherent(self) -> "PromptFile":
        if CONTEXT_SLOT not in self.query:
            raise ValueError(f"query must contain {CONTEXT_SLOT}")
        if self.format == "answer" and not self.instructions:
            raise ValueError("format `answer` needs a non-empty `instructions` list")
        return self


COPY_PROBE_CHARS = 60


def _normalised(text: str) -> str:
    return " ".join(text.lower().split())


def _answers(output: str) -> list[str]:
    """The answer texts of a few-shot output (long enough to be telling)."""
    from llavaforge.prompts.parse import answer_values

    return [a for a in map(_normalised, answer_values(output)) if len(a) >= COPY_PROBE_CHARS // 2]


def _message(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


@dataclass(frozen=True)
class PromptTask:
    spec: PromptFile
    prompt_version: str  # task-v<version>-<content hash>: changes with any edit of the file

    @property
    def name(self) -> str:
        return self.spec.task

    def user_message(self, context: str) -> str:
        return self.spec.query.replace(CONTEXT_SLOT, context.strip()).strip()

    def prefix_messages(self, examples: Optional[int] = None) -> list[dict[str, str]]:
        """System message and few-shot turns: the part shared by every request of this task."""
        shots = self.spec.examples if examples is None else self.spec.examples[:examples]
        messages = [_message("system", self.spec.system.strip())]
        for shot in shots:
            messages += [_message("user", self.user_message(shot.context)),
                         _message("assistant", shot.output.strip())]
        return messages

    def messages(self, context: str, examples: Optional[int] = None) -> list[dict[str, str]]:
        return self.prefix_messages(examples) + [_message("user", self.user_message(context))]

    def vision_messages(self, context: str) -> list[dict[str, str]]:
        """System and user message of this task in vlm mode; the backend puts the image before
        the user message's text."""
        if self.spec.vision is None:
            raise PromptError(f"task {self.name!r} has no `vision` prompt: it cannot run in vlm mode")
        query = self.spec.vision.query.replace(CONTEXT_SLOT, context.strip()).strip()
        return [_message("system", self.spec.vision.system.strip()), _message("user", query)]

    def copies_an_example(self, text: str) -> bool:
        """Whether `text` repeats the opening of a few-shot answer (small models do): an
        answer about the example's image, not this one."""
        said = _normalised(text)
        for shot in self.spec.examples:
            for answer in _answers(shot.output):
                if answer[:COPY_PROBE_CHARS] in said:
                    return True
        return False


@dataclass(frozen=True)
class PromptLibrary:
    folder: str
    tasks: dict[str, PromptTask]
    fingerprint: str  # of every file in the folder: fold into the recipe hash

    def task(self, name: str) -> PromptTask:
        if name not in self.tasks:
            raise PromptError(f"no prompt file for task {name!r} in {self.folder} "
                              f"(has: {', '.join(sorted(self.tasks)) or 'none'})")
        return self.tasks[name]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load_task(path: Path, data: bytes) -> PromptTask:
    try:
        raw = yaml.safe_load(data)
    except yaml.YAMLError as e:
        raise PromptError(f"prompt file {path} is not valid YAML: {e}") from e
    try:
        spec = PromptFile.model_validate(raw)
    except ValidationError as e:
        fields = "; ".join(f"`{'.'.join(str(p) for p in err['loc']) or '(file)'}`: {err['msg']}"
                           for err in e.errors())
        raise PromptError(f"prompt file {path}: {fields}") from e
    if spec.task != path.stem:
        raise PromptError(f"prompt file {path}: `task` is {spec.task!r}, expected {path.stem!r} (the file name)")
    return PromptTask(spec=spec, prompt_version=f"{spec.task}-v{spec.version}-{_digest(data)[:8]}")


def load_library(folder: Optional[str] = None) -> PromptLibrary:
    """Every `*.yaml` in `folder` (default: the packaged library) as a task type."""
    try:
        files = prompt_files(folder)
    except OSError as e:
        raise PromptError(str(e)) from e
    tasks = {p.stem: _load_task(p, data) for p, data in files.items()}
    return PromptLibrary(folder=str(prompt_folder(folder)), tasks=tasks, fingerprint=files_fingerprint(files))
