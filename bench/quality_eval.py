"""Precision and recall of the quality checks on the hand-labelled sets in tests/data.

    python bench/quality_eval.py [--show-errors] [--without-wrong-annotations] [--set PATH ...]

Without --set it reads the two hand-written sets below; `--set PATH` (repeatable) reads the
given files instead, e.g. the labelled real outputs and the injection set in tests/data.
Each file gets its own table, and an `overall` table sums all files read.
`--without-wrong-annotations` leaves out the cases marked `source.annotations_wrong` (bad
because they repeat annotations that are wrong about the photo: no check that compares
answers with the annotations can see them).

A case counts as predicted bad when any check fires (reject or flag). Precision and recall
are over the bad cases. Per reason: `labelled` = cases whose primary reason it is,
`predicted` = cases on which that check fired, precision = both / predicted, recall =
both / labelled (a check firing on a case labelled with another primary reason counts
against its precision, so per-reason precision is pessimistic).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from llavaforge.prompts.library import load_library
from llavaforge.prompts.scaffolding import prompt_scaffolding
from llavaforge.quality.checker import ConversationChecker
from llavaforge.schemas.record import (SOURCE_MODEL, Annotations, Caption, Conversation, DetectedObject, OcrText,
                                       Tag, Turn)
from llavaforge.config.check import CheckConfig

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
EVAL_SET = DATA / "quality_eval.jsonl"
# Written after the checks existed and not used to change them: the less biased estimate.
HELD_OUT_SET = DATA / "quality_eval_heldout.jsonl"
WHOLE_IMAGE = [0.0, 0.0, 1.0, 1.0]


def annotations_of(case: dict[str, Any]) -> Annotations:
    """The eval set's compact annotations (lists of strings) as the pipeline's records."""
    a = case["annotations"]
    return Annotations(
        captions=[Caption(t, "captioner") for t in a.get("captions", [])]
        + [Caption(t, SOURCE_MODEL) for t in a.get("source_captions", [])],
        objects=[DetectedObject(label, 0.9, WHOLE_IMAGE, "detector") for label in a.get("objects", [])],
        tags=[Tag(label, 0.5, "tagger") for label in a.get("tags", [])],
        ocr=[OcrText(text, 0.9, WHOLE_IMAGE, "ocr") for text in a.get("ocr", [])])


def conversation_of(case: dict[str, Any]) -> Conversation:
    return Conversation(task=case["task"], turns=[Turn(role, value) for role, value in case["turns"]])


def load_cases(path: Path = EVAL_SET, without_wrong_annotations: bool = False) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        cases = [json.loads(line) for line in f if line.strip()]
    if without_wrong_annotations:
        cases = [c for c in cases if not c.get("source", {}).get("annotations_wrong")]
    return cases


def default_checker(config: CheckConfig = CheckConfig()) -> ConversationChecker:
    """The checks as a run configures them: default recipe, the packaged prompt library."""
    return ConversationChecker(config, prompt_scaffolding(load_library()))


def evaluate(cases: list[dict[str, Any]], checker: ConversationChecker) -> dict[str, Any]:
    tp = fp = fn = 0
    by_reason: dict[str, Counter] = {}
    errors = []
    for case in cases:
        findings = checker.findings(conversation_of(case), checker.evidence(annotations_of(case)))
        predicted = {f.reason for f in findings}
        bad = case["label"] == "bad"
        tp += bad and bool(predicted)
        fp += (not bad) and bool(predicted)
        fn += bad and not predicted
        for reason in predicted | ({case["reason"]} if bad else set()):
            c = by_reason.setdefault(reason, Counter())
            c["labelled"] += reason == case["reason"]
            c["predicted"] += reason in predicted
            c["both"] += reason == case["reason"] and reason in predicted
        if bool(predicted) != bad or (bad and case["reason"] not in predicted):
            errors.append((case["id"], case["reason"], [f"{f.reason}: {f.detail}" for f in findings]))
    return {"cases": len(cases), "bad": tp + fn, "tp": tp, "fp": fp, "fn": fn,
            "precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / (tp + fn) if tp + fn else 1.0,
            "by_reason": by_reason, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show-errors", action="store_true", help="list the misjudged cases")
    parser.add_argument("--set", dest="sets", action="append", type=Path, metavar="PATH",
                        help="a labelled JSONL file to evaluate instead of the default sets (repeatable)")
    parser.add_argument("--without-wrong-annotations", action="store_true",
                        help="leave out cases marked source.annotations_wrong")
    args = parser.parse_args()
    checker = default_checker()
    everything = []
    for path in args.sets or (EVAL_SET, HELD_OUT_SET):
        cases = load_cases(path, args.without_wrong_annotations)
        everything += cases
        report(path.name, evaluate(cases, checker), args.show_errors)
    report("overall", evaluate(everything, checker), show_errors=False)


def report(name: str, result: dict[str, Any], show_errors: bool) -> None:
    print(f"{name}: {result['cases']} cases, {result['bad']} bad: precision {result['precision']:.3f}, "
          f"recall {result['recall']:.3f} (tp {result['tp']}, fp {result['fp']}, fn {result['fn']})")
    print(f"  {'reason':<20} {'labelled':>8} {'predicted':>9} {'precision':>9} {'recall':>7}")
    for reason, c in sorted(result["by_reason"].items()):
        precision = c["both"] / c["predicted"] if c["predicted"] else float("nan")
        recall = c["both"] / c["labelled"] if c["labelled"] else float("nan")
        print(f"  {reason:<20} {c['labelled']:>8} {c['predicted']:>9} {precision:>9.2f} {recall:>7.2f}")
    if show_errors:
        for case_id, reason, findings in result["errors"]:
            print(f"    {case_id} (labelled {reason}): {findings}")


if __name__ == "__main__":
    main()
