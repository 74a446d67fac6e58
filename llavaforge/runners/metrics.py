"""Model throughput from Beam's RunInference metrics, for the run summary and metrics.json."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from apache_beam.runners.runner import PipelineResult

from llavaforge.schemas.record import in_flow_order

_LATENCY = "inference_batch_latency_micro_secs"
_BATCH = "inference_request_batch_size"
_COUNT = "num_inferences"
_LOAD = "load_model_latency_milli_secs"
# counted by the VLM hf backend (models/vlm/hf.py) in its role's namespace
_ENCODINGS = ("image_encodings_reused", "image_encodings_computed")


def _value(result) -> Any:
    # Runners differ in which of committed/attempted they fill.
    return result.committed if result.committed is not None else result.attempted


def _query(result: PipelineResult) -> dict:
    try:
        return result.metrics().query()
    except Exception:  # noqa: BLE001 -- a runner without metrics support: no figures
        return {}


def stage_metrics(result: PipelineResult) -> dict[str, dict[str, float]]:
    """Per stage (every StageFn counts under its stage's name): elements in, records out,
    rejects, seconds spent in the stage (summed over workers) and elements per such second.
    Empty when the runner reports no metrics."""
    raw: dict[str, dict[str, Any]] = defaultdict(dict)
    queried = _query(result)
    for kind in ("counters", "distributions"):
        for metric in queried.get(kind, []):
            name = metric.key.metric.name
            if name in ("in", "out", "rejected", "element_us"):
                raw[metric.key.metric.namespace][name] = _value(metric)
    stages = {}
    for namespace in in_flow_order(raw):
        values = raw[namespace]
        if "in" not in values:
            continue
        timing = values.get("element_us")
        seconds = timing.sum / 1e6 if timing is not None and timing.count else 0.0
        stages[namespace] = {"in": values["in"], "out": values.get("out", 0), "rejected": values.get("rejected", 0),
                             "seconds": round(seconds, 3),
                             "items_per_second": round(values["in"] / seconds, 1) if seconds else None}
    return stages


def format_stage_metrics(stages: dict[str, dict[str, float]]) -> list[str]:
    return [f"  {name:<28} {s['in']:>7} in {s['out']:>7} out {s['rejected']:>6} rejected  {s['seconds']:>8.2f} s"
            + (f"  {s['items_per_second']:.1f}/s" if s.get("items_per_second") else "")
            for name, s in stages.items()]


def model_metrics(result: PipelineResult) -> dict[str, dict[str, float]]:
    """Per model role (RunInference metrics namespace): items, batches, mean batch size and
    latency, model-time items/s, model load time. Empty when the runner reports no metrics."""
    queried = _query(result)
    raw: dict[str, dict[str, Any]] = defaultdict(dict)
    for kind in ("counters", "distributions"):
        for metric in queried.get(kind, []):
            name = metric.key.metric.name
            if name in (_LATENCY, _BATCH, _COUNT, _LOAD, *_ENCODINGS):
                raw[metric.key.metric.namespace][name] = _value(metric)
    roles = {}
    for namespace, values in sorted(raw.items()):
        latency, batch = values.get(_LATENCY), values.get(_BATCH)
        items = values.get(_COUNT) or (batch.sum if batch else 0)
        if not latency or not latency.count:
            continue
        model_seconds = latency.sum / 1e6
        roles[namespace] = {
            "items": items,
            "batches": latency.count,
            "mean_batch_size": round(batch.mean, 1) if batch and batch.count else None,
            "mean_batch_ms": round(latency.mean / 1e3, 1),
            "items_per_model_second": round(items / model_seconds, 2) if model_seconds else None,
            "load_model_ms": values[_LOAD].max if values.get(_LOAD) and values[_LOAD].count else None,
            **{name: values[name] for name in _ENCODINGS if values.get(name)},
        }
    return roles


def format_model_metrics(roles: dict[str, dict[str, float]]) -> list[str]:
    lines = []
    for namespace, m in roles.items():
        reused = (f", {m.get('image_encodings_reused', 0)} image encodings reused"
                  if any(name in m for name in _ENCODINGS) else "")
        lines.append(f"  {namespace:<28} {m['items']:>7} items in {m['batches']} batches "
                     f"(mean {m['mean_batch_size']}), {m['mean_batch_ms']} ms/batch, "
                     f"{m['items_per_model_second']} items/s of model time{reused}")
    return lines
