"""Recipe section `verify`: a vision-language model looks at each image and judges every answer
written about it; its verdicts reject or flag the samples (stage `verify`, after `check`).

Off unless the recipe turns it on (`verify.enabled: true`); a preset may name the model.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from llavaforge.config.vlm import VlmConfig, require_model_when_enabled

VerdictAction = Literal["reject", "flag", "ignore"]


class VerifyConfig(VlmConfig):
    enabled: bool = Field(
        default=False,
        description="Run the verify stage: the VLM sees each image with its generated answers and says, per "
                    "answer, whether its claims hold (runs only when synthesis does).")
    max_new_tokens: int = Field(
        default=192, ge=1, le=8192,
        description="Most tokens of one verdict (all answers of one image are judged in one request).")
    tasks: list[str] = Field(
        default_factory=list, description="Task types whose conversations are verified; empty = every task.")
    max_answer_chars: int = Field(
        default=1200, ge=20,
        description="Characters of each answer (and its question) shown to the verifier; longer text is cut.")
    contradicted: VerdictAction = Field(
        default="reject",
        description="An answer the VLM says the image contradicts (reason `vlm_contradicted`): reject the "
                    "sample, flag it (kept, reason in `flags`) or ignore it.")
    unsure: VerdictAction = Field(
        default="flag",
        description="An answer the VLM cannot confirm from the image (reason `vlm_unsure`): reject, flag or ignore.")
    no_verdict: VerdictAction = Field(
        default="reject",
        description="An answer the VLM's reply gives no readable verdict for (reason `vlm_no_verdict`): "
                    "reject, flag or ignore.")
    prompt_file: Optional[str] = Field(
        default=None,
        description="YAML prompt file (kind verify) replacing the packaged one "
                    "(llavaforge/prompts/vision/verify.yaml); its content is part of the recipe hash.")

    _model_when_enabled = model_validator(mode="after")(require_model_when_enabled)

    @field_validator("tasks")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("task types must be distinct")
        return v

    def verifies(self, task: str) -> bool:
        return not self.tasks or task in self.tasks
