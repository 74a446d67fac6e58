"""`render_report`: one run folder -> one self-contained HTML file.

The page is rendered by Jinja2 with autoescaping on: every text that comes from the data
(conversations, OCR, source text, reject details, file names) is untrusted and reaches the
page only escaped. CSS, the filter script and the thumbnails are inline; a Content Security
Policy allows no network request at all and runs only the page's own script (by its hash), so
the file opens offline and a text that slipped through escaping still could not run.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import fsspec
import jinja2
import numpy as np

from llavaforge import __version__
from llavaforge.report import charts
from llavaforge.report.collect import NO_TASK, TOKEN_METHOD, GalleryImage, RunData, collect
from llavaforge.report.thumbnails import thumbnails

# Pipeline order for the per-stage table; stages it does not know follow in their own order.
STAGE_ORDER = ("read", "decode", "dedup", "published", "annotate", "synthesize", "check", "verify",
               "question_dedup", "write")
ACCOUNTING = (("inputs", "inputs"), ("images_written", "images written"),
              ("images_rejected", "images rejected"), ("duplicates", "duplicates"),
              ("samples_written", "samples written"), ("sample_rejects", "samples rejected"))
TEXT_LIMITS = {"turn": 4000, "source": 1000, "ocr": 1000, "caption": 500, "detail": 2000}
TOP = 20


@dataclass
class ReportResult:
    path: str
    bytes: int
    seconds: float
    images_shown: int
    images_total: int
    timings: dict[str, float]  # seconds per step: collect, thumbnails, html


def clip(text: Optional[str], kind: str) -> str:
    text = text or ""
    limit = TEXT_LIMITS[kind]
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def _box(box: Optional[list[float]]) -> Optional[dict[str, float]]:
    if not box or len(box) != 4:
        return None
    x1, y1, x2, y2 = (min(max(float(v), 0.0), 1.0) for v in box)
    if x2 <= x1 or y2 <= y1:
        return None
    return {"x": round(100 * x1, 2), "y": round(100 * y1, 2),
            "w": round(100 * (x2 - x1), 2), "h": round(100 * (y2 - y1), 2)}


def _card(image: GalleryImage) -> dict[str, Any]:
    row = image.first
    objects = [{"label": o["label"], "score": o["score"], "box": _box(o["box"])} for o in row["objects"] or []]
    ocr = [{"text": clip(o["text"], "ocr"), "score": o["score"], "box": _box(o["box"])} for o in row["ocr"] or []]
    samples = [{
        "id": r["id"], "task": r["task"] or "", "flags": list(r["flags"] or []),
        "turns": [{"role": t["from"], "text": clip(t["value"], "turn")} for t in r["conversations"] or []],
        "backend": r["backend"], "model": r["model"], "prompt_version": r["prompt_version"],
        "tokens_in": r["tokens_in"], "tokens_out": r["tokens_out"],
    } for r in image.rows]
    return {
        "key": image.key, "thumbnail": image.thumbnail, "thumbnail_error": image.thumbnail_error,
        "width": row["width"], "height": row["height"], "format": row["image_format"],
        "source_url": row["source_url"], "source_member": row["source_member"],
        "source_texts": [clip(t, "source") for t in row["source_texts"] or []],
        "captions": [{"text": clip(c["text"], "caption"), "model": c["model"]} for c in row["captions"] or []],
        "objects": objects, "ocr": ocr,
        "tags": [{"label": t["label"], "score": t["score"]} for t in row["tags"] or []],
        "samples": samples,
        "tasks": sorted({s["task"] for s in samples}),
        "flags": sorted({f for s in samples for f in s["flags"]}),
    }


def _percentiles(values: Optional[np.ndarray]) -> Optional[dict[str, float]]:
    if values is None or values.size == 0:
        return None
    p50, p90 = np.percentile(values, [50, 90])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "max": int(values.max())}


def _all(parts: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate(list(parts.values())) if parts else np.zeros(0, np.int64)


def _stage_rows(stages: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    known = [s for s in STAGE_ORDER if s in stages]
    order = known + [s for s in stages if s not in STAGE_ORDER]
    total = sum(float(stages[s].get("seconds") or 0) for s in order) or 1.0
    rows = []
    for name in order:
        figures = stages[name]
        seconds = float(figures.get("seconds") or 0)
        rows.append({"stage": name, "in": figures.get("in"), "out": figures.get("out"),
                     "rejected": figures.get("rejected"), "seconds": seconds,
                     "per_second": (figures.get("in") or 0) / seconds if seconds > 0 else None,
                     "percent": round(100 * seconds / total, 2)})
    return rows


def _warnings(data: RunData) -> list[str]:
    stats = data.stats
    notes = []
    if not stats.get("balanced", False):
        notes.append("The run does not balance: inputs != images written + rejected + duplicates.")
    file_figures = {"images_written": data.images, "samples_written": data.samples}
    for name, value in file_figures.items():
        if stats.get(name) != value:
            notes.append(f"stats.json says {name} = {stats.get(name)} but samples/ holds {value}; "
                         "run `llavaforge verify` on this folder.")
    stats_rejects = {(stage, reason): n for stage, by in (stats.get("rejects") or {}).items() for reason, n in by.items()}
    if stats_rejects != dict(data.reject_counts):
        notes.append("The reject counts in stats.json differ from the rows in rejects/; "
                     "run `llavaforge verify` on this folder.")
    missing = [image.key for image in data.gallery if image.thumbnail is None]
    if missing:
        notes.append(f"{len(missing)} gallery image(s) could not be shown (missing or unreadable under images/).")
    return notes


def _when(epoch: Optional[float]) -> Optional[str]:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if epoch else None


def page_context(data: RunData, examples_per_reason: int) -> dict[str, Any]:
    """Everything the template reads, as plain values."""
    stats = data.stats
    seconds = (stats.get("finished_at") or 0) - (stats.get("started_at") or 0)
    tasks = sorted(set(stats.get("tasks") or {}) | set(data.rejected_tasks) | {t for t in data.tasks if t != NO_TASK})
    written_samples = sum((stats.get("tasks") or {}).values()) or 1
    per_task = [{
        "task": task,
        "written": (stats.get("tasks") or {}).get(task, 0),
        "rejected": data.rejected_tasks.get(task, 0),
        "share": round(100 * (stats.get("tasks") or {}).get(task, 0) / written_samples, 1),
        "answers": _percentiles(data.answer_tokens.get(task)),
        "questions": _percentiles(data.question_tokens.get(task)),
        "rounds": _percentiles(data.rounds.get(task)),
    } for task in tasks]
    rejects = [(f"{stage}/{reason}", n) for stage, by in (stats.get("rejects") or {}).items() for reason, n in by.items()]
    distributions = [
        ("question-tokens", "Question length", "approximate tokens per human turn", _all(data.question_tokens)),
        ("answer-tokens", "Answer length", "approximate tokens per gpt turn", _all(data.answer_tokens)),
        ("rounds", "Turns per conversation", "question-answer pairs per sample", _all(data.rounds)),
        ("widths", "Image width", "pixels", data.widths),
        ("heights", "Image height", "pixels", data.heights),
    ]
    cards = [_card(image) for image in data.gallery]
    return {
        "version": __version__,
        "run_dir": data.run_dir,
        "stats": stats,
        "run": {
            "run_id": stats.get("run_id"), "preset": stats.get("preset"), "recipe_hash": stats.get("recipe_hash"),
            "llavaforge_version": stats.get("llavaforge_version"), "inputs_patterns": stats.get("inputs_patterns") or [],
            "started": _when(stats.get("started_at")), "finished": _when(stats.get("finished_at")),
            "seconds": seconds if seconds > 0 else None,
        },
        "accounting": [{"key": key, "label": label, "value": stats.get(key)} for key, label in ACCOUNTING],
        "balance": charts.stacked([("written", stats.get("images_written") or 0),
                                   ("rejected", stats.get("images_rejected") or 0),
                                   ("duplicates", stats.get("duplicates") or 0)]),
        "balanced": bool(stats.get("balanced")),
        "warnings": _warnings(data),
        "reject_bars": charts.bars(rejects),
        "reject_total": sum(n for _, n in rejects),
        "task_bars": charts.bars((stats.get("tasks") or {}).items()),
        "per_task": per_task,
        "token_method": TOKEN_METHOD,
        "histograms": [{"id": id_, "title": title, "unit": unit, "hist": charts.histogram(values)}
                       for id_, title, unit, values in distributions],
        "hist_size": (charts.HIST_WIDTH, charts.HIST_HEIGHT),
        "objects": charts.bars(data.objects.items(), limit=TOP),
        "tags": charts.bars(data.tags.items(), total=data.images, limit=TOP),
        "flags": charts.bars(data.flags.items(), total=data.samples),
        "flagged_samples": data.flagged_samples,
        "formats": charts.bars(data.formats.items(), total=data.images),
        "coverage": charts.bars(data.coverage.items(), total=data.images),
        "first_questions": [{"task": task, "text": clip(text, "caption"), "count": n}
                            for (task, text), n in charts.largest(data.first_questions.items(), TOP)],
        "distinct_first_questions": len(data.first_questions),
        "images": data.images, "samples": data.samples, "reject_rows": data.reject_rows,
        "stages": _stage_rows(stats["stages"]) if stats.get("stages") else None,
        "models": sorted((data.metrics or {}).items()),
        "cards": cards,
        "gallery_samples": sum(len(c["samples"]) for c in cards),
        "gallery_tasks": sorted({t for c in cards for t in c["tasks"] if t}),
        "gallery_flags": sorted({f for c in cards for f in c["flags"]}),
        "reject_groups": data.reject_groups,
        "examples_per_reason": examples_per_reason,
    }


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("llavaforge.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda n: "" if n is None else f"{n:,}"
    env.filters["clip"] = clip
    env.filters["fixed"] = lambda x, digits=1: "" if x is None else f"{x:,.{digits}f}"
    return env


def _asset(name: str) -> str:
    return resources.files("llavaforge.report").joinpath("templates", name).read_text(encoding="utf-8")


def render_html(data: RunData, examples_per_reason: int = 10) -> str:
    script = _asset("report.js")
    script_hash = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return _environment().get_template("report.html.j2").render(
        **page_context(data, examples_per_reason), style=_asset("report.css"), script=script,
        script_hash=script_hash)


def default_report_path(run_dir: str) -> str:
    """./llavaforge-report-<run folder name>.html: a local file (a bucket may be read-only, and
    a report is opened where it is read), named so reports of different runs do not collide."""
    name = run_dir.rstrip("/").rsplit("/", 1)[-1] if "://" in run_dir else Path(run_dir).resolve().name
    return f"llavaforge-report-{name or 'run'}.html"


def render_report(run_dir: str, out_path: str, gallery_images: int = 200, examples_per_reason: int = 10,
                  thumbnail_px: int = 192) -> ReportResult:
    """Write the report of one run folder (any fsspec URL) to out_path (any fsspec URL).

    Statistics cover every row; the gallery shows up to `gallery_images` images (all their
    samples), the rejects gallery up to `examples_per_reason` rows per reason, both chosen by
    key hash."""
    started = step = time.perf_counter()
    timings = {}

    def lap(name: str) -> None:
        nonlocal step
        now = time.perf_counter()
        timings[name] = now - step
        step = now

    data = collect(run_dir, gallery_images, examples_per_reason)
    lap("collect")
    shown = thumbnails(run_dir, [image.first["image"] for image in data.gallery], thumbnail_px)
    for image in data.gallery:
        result = shown[image.first["image"]]
        if isinstance(result, Exception):
            image.thumbnail_error = f"{type(result).__name__}: {result}"
        else:
            image.thumbnail = result
    lap("thumbnails")
    encoded = render_html(data, examples_per_reason).encode("utf-8")
    with fsspec.open(out_path, "wb") as f:
        f.write(encoded)
    lap("html")
    return ReportResult(path=out_path, bytes=len(encoded), seconds=time.perf_counter() - started,
                        images_shown=len(data.gallery), images_total=data.images, timings=timings)
