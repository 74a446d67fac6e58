"""The record-level handlers of two VLM roles: the dense captioner (an annotate role) and the
verifier. Each turns a batch of `ImageRecord`s into one request per record over the shared
engine (`handler.shared_engine`) and returns one `PredictionResult(record, ...)` per record."""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

from apache_beam.ml.inference.base import PredictionResult

from llavaforge.config.verify import VerifyConfig
from llavaforge.config.vlm import DenseCaptionerConfig
from llavaforge.models.llm.base import Generation
from llavaforge.models.vlm.base import VlmEngine, VlmRequest
from llavaforge.models.vlm.handler import VlmHandler
from llavaforge.prompts.vision import load_vision_prompt, render_answers
from llavaforge.schemas.llava import GPT, HUMAN, IMAGE_TOKEN
from llavaforge.schemas.record import Caption, ImageRecord


class RecordVlmHandler(VlmHandler):
    """Records in; `request_for` builds each one's request, `result_for` reads its generation."""

    def request_for(self, record: ImageRecord) -> VlmRequest:
        raise NotImplementedError

    def result_for(self, record: ImageRecord, generation: Generation) -> Any:
        raise NotImplementedError

    def run_inference(self, batch: Sequence[ImageRecord], model: VlmEngine,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        generations = model.run([self.request_for(record) for record in batch], self.settings)
        return [PredictionResult(record, self.result_for(record, generation), self.model_name)
                for record, generation in zip(batch, generations)]


class DenseCaptionerHandler(RecordVlmHandler):
    """`annotate.dense_captioner`: one detailed description per image, as a `Caption`. A failed
    or empty generation raises, so the stage retries image by image and rejects only that one."""

    def __init__(self, config: DenseCaptionerConfig) -> None:
        super().__init__(config, "annotate.dense_captioner", "dense_captioner")
        self.prompt = load_vision_prompt("dense_caption", config.prompt_file)

    def request_for(self, record: ImageRecord) -> VlmRequest:
        return VlmRequest(messages=tuple(self.prompt.messages()), image=record.image)

    def result_for(self, record: ImageRecord, generation: Generation) -> list[Caption]:
        if generation.error:
            raise RuntimeError(generation.error)
        if not generation.text.strip():
            raise ValueError("the dense captioner produced no text")
        return [Caption(text=generation.text.strip(), model=self.model_name)]


def verified_answers(record: ImageRecord, config: VerifyConfig) -> list[tuple[int, str, str]]:
    """(conversation index, question, answer) of every answer the verifier judges, in order."""
    pairs = []
    for index, conversation in enumerate(record.conversations):
        if not config.verifies(conversation.task):
            continue
        question = ""
        for turn in conversation.turns:
            if turn.role == HUMAN:
                question = turn.value.replace(IMAGE_TOKEN, "").strip()
            elif turn.role == GPT:
                pairs.append((index, question, turn.value))
    return pairs


class VerifierHandler(RecordVlmHandler):
    """`verify`: all answers of one image judged in one request (one image prefill per image).
    Results are the raw generations: the stage reads the verdicts (`prompts/verdict.py`)."""

    def __init__(self, config: VerifyConfig) -> None:
        super().__init__(config, "verify", "verifier")
        self.verify_config = config
        self.prompt = load_vision_prompt("verify", config.prompt_file)

    @property
    def prompt_version(self) -> str:
        return self.prompt.prompt_version

    def request_for(self, record: ImageRecord) -> VlmRequest:
        pairs = [(q, a) for _, q, a in verified_answers(record, self.verify_config)]
        answers = render_answers(pairs, self.verify_config.max_answer_chars)
        return VlmRequest(messages=tuple(self.prompt.messages(answers)), image=record.image)

    def result_for(self, record: ImageRecord, generation: Generation) -> Generation:
        return generation
