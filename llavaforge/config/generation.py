"""Settings of a chat model's generation that do not depend on which stage asks: sampling, an
OpenAI-compatible endpoint, and the hf backends' own decoding loop switches. Shared by the LLM
of `synthesize` and the vision-language model roles (`config/vlm.py`)."""

from __future__ import annotations

from typing import Optional

from pydantic import Field, field_validator

from llavaforge.config.base import StrictModel


def require_static_loop_for_compile(static: Optional[bool], compile: Optional[bool], static_field: str,
                                    loop_name: str) -> None:
    """A compiled step needs the fixed shapes of llavaforge's static decoding loop (`loop_name`
    is how the message calls it)."""
    if compile and static is False:
        raise ValueError(f"`compile` needs {loop_name}: leave `{static_field}` unset or true")


def static_loop_switches(static: Optional[bool], compile: Optional[bool], on_gpu: bool) -> tuple[bool, bool]:
    """(static loop, compile) as set, or by default on for a model on the GPU."""
    static = static if static is not None else on_gpu
    return static, static and (compile if compile is not None else on_gpu)


class SamplingConfig(StrictModel):
    temperature: float = Field(
        default=0.0, ge=0.0,
        description="0 decodes greedily (deterministic); above 0 samples, seeded per conversation "
                    "from the recipe seed, the image key and the task.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass (when sampling).")
    repetition_penalty: float = Field(
        default=1.0, ge=1.0,
        description="Penalty on repeated tokens (hf and vllm backends; 1.0 = off). Helps small "
                    "models that loop.")


class OpenAiBackendConfig(StrictModel):
    base_url: str = Field(
        default="http://127.0.0.1:8000/v1",
        description="OpenAI-compatible API root; `/chat/completions` is appended.")
    api_key_env: Optional[str] = Field(
        default="OPENAI_API_KEY",
        description="NAME of the environment variable holding the API key (the key itself never "
                    "goes into a recipe, log or output); None sends no key.")
    max_concurrency: int = Field(default=8, ge=1, description="Requests in flight at once per worker.")
    timeout_s: float = Field(default=120.0, gt=0.0, description="Per-request timeout in seconds.")
    max_retries: int = Field(
        default=5, ge=0, description="Retries of one request on 429, 5xx, timeouts and malformed replies.")
    backoff_base_s: float = Field(
        default=1.0, ge=0.0, description="First retry delay; doubles each retry, with jitter.")
    backoff_max_s: float = Field(
        default=60.0, ge=0.0, description="Longest delay between retries (also caps Retry-After).")
    request_budget: Optional[int] = Field(
        default=None, ge=0,
        description="Most HTTP requests (retries included) one worker process sends in a run; "
                    "requests past it become rejects. None = unlimited.")

    @field_validator("api_key_env")
    @classmethod
    def _is_a_name(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and (not v or not v.replace("_", "").isalnum()):
            raise ValueError("must be the NAME of an environment variable (letters, digits, _)")
        return v
