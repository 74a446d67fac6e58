"""Annotate: captions, objects, tags and OCR text for every record, one RunInference per role.

Roles run in flow order (captioner, detector, tagger, OCR, dense captioner: a vision-language
model, `models/vlm/`), each adding its annotations to
the record with its model's name. A batch whose inference fails is retried image by image,
so only the image that breaks the model becomes a reject (stage `annotate`, reason
`<role>_failed`); the rest of the batch is annotated. A model that cannot be loaded fails
the run at once (`ModelLoadError` naming the role and model id).

Source-provided text (alt text, captions from the shard) becomes `Caption(text, "source")`
here. The stage runs even when no vision role is configured, so that text always reaches the
LLM as a caption.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Optional

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference

from llavaforge.models.captioner import CaptionerHandler
from llavaforge.config.annotate import AnnotateConfig, ModelConfig
from llavaforge.models.detector import DetectorHandler
from llavaforge.models.handler import Annotation
from llavaforge.models.ocr import OcrHandler
from llavaforge.models.tagger import TaggerHandler
from llavaforge.models.vlm.roles import DenseCaptionerHandler
from llavaforge.schemas.record import Caption, ImageRecord, Reject
from llavaforge.transforms.base import RetryEachItemFn, StageFn, apply_stage_fn

STAGE = "annotate"
SOURCE_MODEL = "source"

HANDLERS: dict[str, type[ModelHandler]] = {
    "captioner": CaptionerHandler,
    "detector": DetectorHandler,
    "tagger": TaggerHandler,
    "ocr": OcrHandler,
    "dense_captioner": DenseCaptionerHandler,  # a vision-language model (models/vlm/)
}
# where each role's output goes in `Annotations`
ANNOTATION_FIELDS = {"captioner": "captions", "detector": "objects", "tagger": "tags", "ocr": "ocr",
                     "dense_captioner": "captions"}


def make_handler(role: str, config: ModelConfig) -> ModelHandler:
    return HANDLERS[role](config)


def failure_reason(role: str) -> str:
    return f"{role}_failed"


def with_annotations(record: ImageRecord, role: str, items: list[Annotation]) -> ImageRecord:
    """A copy of `record` with `items` appended to the role's annotation list."""
    field = ANNOTATION_FIELDS[role]
    annotations = dataclasses.replace(record.annotations, **{field: [*getattr(record.annotations, field), *items]})
    return record.replace(annotations=annotations)


def with_source_captions(record: ImageRecord) -> ImageRecord:
    """Text that came with the image in its shard, kept as captions by model "source"."""
    texts = [t.strip() for t in record.source.texts if t.strip()]
    known = {c.text for c in record.annotations.captions if c.model == SOURCE_MODEL}
    captions = [Caption(text=t, model=SOURCE_MODEL) for t in dict.fromkeys(texts) if t not in known]
    return with_annotations(record, "captioner", captions) if captions else record


class _AddAnnotationsFn(StageFn):
    """A RunInference result -> the record with this role's annotations."""

    stage = STAGE

    def __init__(self, role: str) -> None:
        self.progress_label = f"{STAGE}_{role}"
        super().__init__()
        self._role = role

    def process_element(self, keyed: tuple) -> Iterator[ImageRecord]:
        _, result = keyed
        yield with_annotations(result.example, self._role, result.inference)

    def element_rejects(self, keyed: tuple, error: Exception) -> list[Reject]:
        record = keyed[1].example
        return [Reject.of(record.key, record.source, STAGE, failure_reason(self._role),
                          f"{type(error).__name__}: {error}", retryable=True)]


class _RetryEachImageFn(RetryEachItemFn):
    """A failed batch, image by image: the images that work are annotated, the others rejected."""

    stage = STAGE

    def __init__(self, role: str, handler: ModelHandler) -> None:
        self.progress_label = f"{STAGE}_{role}"
        super().__init__(handler)
        self._role = role

    def model_input(self, keyed: tuple) -> ImageRecord:
        return keyed[1]

    def succeeded(self, keyed: tuple, result) -> ImageRecord:
        return with_annotations(keyed[1], self._role, result.inference)

    def failed(self, keyed: tuple, error: Exception) -> Reject:
        key, record = keyed
        return Reject.of(key, record.source, STAGE, failure_reason(self._role), f"{type(error).__name__}: {error}",
                         retryable=True)


class AnnotateRole(beam.PTransform):
    """ImageRecords -> (records with this role's annotations, rejects), via keyed RunInference."""

    def __init__(self, role: str, config: ModelConfig) -> None:
        super().__init__()
        self._role = role
        self._handler = make_handler(role, config)

    def expand(self, records):
        role = self._role
        results, failures = (
            records
            | "Key" >> beam.Map(lambda r: (r.key, r))
            | "RunInference" >> RunInference(KeyedModelHandler(self._handler)).with_exception_handling()
        )
        annotated, add_rejects = apply_stage_fn(results, _AddAnnotationsFn(role), "AddAnnotations")
        retried, retry_rejects = apply_stage_fn(failures.failed_inferences, _RetryEachImageFn(role, self._handler),
                                                "RetryEachImage")
        merged = (annotated, retried) | "Merge" >> beam.Flatten()
        return merged, (add_rejects, retry_rejects) | "RoleRejects" >> beam.Flatten()


class Annotate(beam.PTransform):
    """ImageRecords -> (annotated records, rejects): source captions, then every configured role.

    `gpu_hints`: resource hints put on the roles whose model runs on cuda (Dataflow right
    fitting); the other roles run on the default workers."""

    def __init__(self, config: AnnotateConfig, gpu_hints: Optional[dict[str, str]] = None) -> None:
        super().__init__()
        self._config = config
        self._gpu_hints = gpu_hints or {}

    def expand(self, records):
        records = records | "SourceCaptions" >> beam.Map(with_source_captions)
        rejects = []
        for role, config in self._config.active_roles():
            stage = AnnotateRole(role, config)
            if config.on_gpu and self._gpu_hints:
                stage = stage.with_resource_hints(**self._gpu_hints)
            records, role_rejects = records | f"Annotate_{role}" >> stage
            rejects.append(role_rejects)
        if not rejects:
            rejects.append(records.pipeline | "NoRejects" >> beam.Create([]))
        return records, tuple(rejects) | "AnnotateRejects" >> beam.Flatten()

