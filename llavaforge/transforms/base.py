"""What every stage shares: records in, records and rejects out, nothing dropped silently."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Union

import apache_beam as beam
from apache_beam.metrics import Metrics

from llavaforge.schemas.record import ImageRecord, RawSample, Reject, source_key

REJECTS = "rejects"


def element_identity(element: Any) -> tuple[str, Any]:
    """(key, source) of any element a stage may receive."""
    if isinstance(element, ImageRecord):
        return element.key, element.source
    if isinstance(element, RawSample):
        return source_key(element.source.url, element.source.member), element.source
    raise TypeError(f"stage got an element of type {type(element).__name__}")


class StageFn(beam.DoFn):
    """One element in, records and `Reject`s out (rejects go to the `rejects` output).

    An exception raised for one element becomes that element's reject (reason `error`), so
    one bad image never fails a bundle. Counts per stage are Beam metrics.
    """

    stage = "stage"

    def __init__(self) -> None:
        super().__init__()
        self._in = Metrics.counter(self.stage, "in")
        self._out = Metrics.counter(self.stage, "out")
        self._rejected = Metrics.counter(self.stage, "rejected")

    def process_element(self, element: Any) -> Iterable[Union[Any, Reject]]:
        raise NotImplementedError

    def process(self, element: Any) -> Iterator[Any]:
        self._in.inc()
        try:
            outputs = list(self.process_element(element))
        except Exception as e:  # noqa: BLE001 -- any failure of one element is its reject
            key, source = element_identity(element)
            outputs = [Reject.of(key, source, self.stage, "error", f"{type(e).__name__}: {e}")]
        for out in outputs:
            if isinstance(out, Reject):
                self._rejected.inc()
                yield beam.pvalue.TaggedOutput(REJECTS, out)
            else:
                self._out.inc()
                yield out


def apply_stage_fn(pcoll, fn: StageFn, label: str):
    """Run a StageFn; every stage PTransform returns this `(records, rejects)` pair."""
    outputs = pcoll | label >> beam.ParDo(fn).with_outputs(REJECTS, main="records")
    return outputs.records, outputs[REJECTS]


def join_by_key(records, side_name: str, side, fn: beam.DoFn, label: str):
    """Group records with `side` ((key, value) pairs) by record key, then let `fn` decide
    per key from `{"records": [...], side_name: [...]}`; returns `(records, rejects)`."""
    outputs = (
        {"records": records | "ByKey" >> beam.Map(lambda r: (r.key, r)), side_name: side}
        | f"Join{side_name.capitalize()}" >> beam.CoGroupByKey()
        | label >> beam.ParDo(fn).with_outputs(REJECTS, main="records")
    )
    return outputs.records, outputs[REJECTS]
