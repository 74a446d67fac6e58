"""What every stage shares: records in, records and rejects out, nothing dropped silently.

Every per-element DoFn of a stage is a `StageFn`: an exception raised for one element becomes
that element's reject(s), so one bad image (or one bad group of a join) never fails a bundle,
and every stage counts its elements in, records out and rejects as Beam metrics (namespace =
the stage), with the time spent per element.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Iterator, Optional, Union

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import PredictionResult

from llavaforge import progress
from llavaforge.schemas.record import ImageRecord, RawSample, Reject, source_key

REJECTS = "rejects"
_MAX_DEPTH = 4
_DONE = object()


def element_identities(element: Any, depth: int = 0) -> list[tuple[str, Any]]:
    """(key, source) of every record an element carries: a record or raw sample itself, or the
    records inside a keyed group, a join, a batch or a model result."""
    if isinstance(element, ImageRecord):
        return [(element.key, element.source)]
    if isinstance(element, RawSample):
        return [(source_key(element.source.url, element.source.member), element.source)]
    if depth >= _MAX_DEPTH:
        return []
    if isinstance(element, PredictionResult):
        return element_identities(element.example, depth + 1)
    if isinstance(element, dict):
        element = list(element.values())
    if isinstance(element, (list, tuple)):
        return [identity for item in element for identity in element_identities(item, depth + 1)]
    return []


class StageFn(beam.DoFn):
    """One element in, records and `Reject`s out (rejects go to the `rejects` output).

    Subclasses implement `process_element`. An exception becomes `element_rejects(element,
    error)`: by default one reject (reason `error`, retryable) per record the element carries.
    A `streaming` stage (a reader) emits its outputs as they come, so the part produced before
    an error stands; the others emit an element's outputs only when all of it succeeded.
    """

    stage = "stage"
    progress_label: Optional[str] = None  # progress and metrics name when a stage has several parts (default: stage)
    streaming = False

    def __init__(self) -> None:
        super().__init__()
        self._progress = progress.StageProgress()
        label = self.label
        self._in = Metrics.counter(label, "in")
        self._out = Metrics.counter(label, "out")
        self._rejected = Metrics.counter(label, "rejected")
        self._errors = Metrics.counter(label, "errors")
        self._element_us = Metrics.distribution(label, "element_us")

    @property
    def label(self) -> str:
        return self.progress_label or self.stage

    def process_element(self, element: Any) -> Iterable[Union[Any, Reject]]:
        raise NotImplementedError

    def element_rejects(self, element: Any, error: Exception) -> list[Any]:
        """What stands for an element whose processing raised (Rejects go to the rejects
        output; a stage may return other outputs that carry a reject downstream)."""
        identities = element_identities(element)
        if not identities:
            raise error  # nothing to reject in its place: losing it silently is worse than failing
        detail = f"{type(error).__name__}: {error}"
        return [Reject.of(key, source, self.stage, "error", detail, retryable=True) for key, source in identities]

    def _outputs(self, element: Any) -> Iterator[Union[Any, Reject]]:
        if self.streaming:
            try:
                yield from self.process_element(element)
            except Exception as e:  # noqa: BLE001 -- any failure of one element is its reject
                self._errors.inc()
                yield from self.element_rejects(element, e)
            return
        try:
            outputs = list(self.process_element(element))
        except Exception as e:  # noqa: BLE001 -- any failure of one element is its reject
            self._errors.inc()
            outputs = self.element_rejects(element, e)
        yield from outputs

    def finish_bundle(self) -> None:
        self._progress.flush()

    def process(self, element: Any) -> Iterator[Any]:
        self._in.inc()
        outputs, spent, out_count, rejected = self._outputs(element), 0.0, 0, 0
        while True:
            # Only the time inside this stage: what a yield hands on runs downstream (fused).
            start = time.perf_counter()
            out = next(outputs, _DONE)
            spent += time.perf_counter() - start
            if out is _DONE:
                break
            if isinstance(out, Reject):
                rejected += 1
                self._rejected.inc()
                yield beam.pvalue.TaggedOutput(REJECTS, out)
            else:
                if not isinstance(out, beam.pvalue.TaggedOutput):  # records out, not side outputs
                    out_count += 1
                    self._out.inc()
                yield out
        self._element_us.update(int(spent * 1e6))
        self._progress.add(self.label, **{"in": 1, "out": out_count, "rejected": rejected, "seconds": spent})


class RetryEachItemFn(StageFn):
    """A batch a model raised on (RunInference's failed inference), item by item: each item is
    run alone, so only the item that breaks the model fails; `failed` says what stands for it."""

    def __init__(self, handler) -> None:
        super().__init__()
        self._handler = handler
        self._model = None

    def setup(self) -> None:
        self._model = self._handler.load_model()  # the process-wide copy RunInference already loaded

    def process_element(self, failed: tuple) -> Iterator[Any]:
        for item in failed[0]:
            try:
                (result,) = self._handler.run_inference([self.model_input(item)], self._model)
            except Exception as e:  # noqa: BLE001 -- this item is the one that breaks the model
                yield self.failed(item, e)
            else:
                yield self.succeeded(item, result)

    def model_input(self, item: Any) -> Any:
        """What the handler takes for one item of the failed batch."""
        return item

    def succeeded(self, item: Any, result: Any) -> Any:
        return result

    def failed(self, item: Any, error: Exception) -> Any:
        raise NotImplementedError


def apply_stage_fn(pcoll, fn: StageFn, label: str):
    """Run a StageFn; every stage PTransform returns this `(records, rejects)` pair."""
    outputs = pcoll | label >> beam.ParDo(fn).with_outputs(REJECTS, main="records")
    return outputs.records, outputs[REJECTS]


def join_by_key(records, side_name: str, side, fn: StageFn, label: str):
    """Group records with `side` ((key, value) pairs) by record key, then let `fn` decide
    per key from `{"records": [...], side_name: [...]}`; returns `(records, rejects)`."""
    joined = (
        {"records": records | "ByKey" >> beam.Map(lambda r: (r.key, r)), side_name: side}
        | f"Join{side_name.capitalize()}" >> beam.CoGroupByKey()
    )
    return apply_stage_fn(joined, fn, label)
