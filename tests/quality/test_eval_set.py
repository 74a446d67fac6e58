"""The labelled evaluation sets meet the issue's targets (see docs/quality.md), and the tuning
parts of the real-output and injection sets stay at least as well judged as when the checks
were built. The held-out files are never evaluated here: docs/quality.md reports them."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


def _bench():
    spec = importlib.util.spec_from_file_location("quality_eval", ROOT / "bench" / "quality_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _bench()
CHECKER = BENCH.default_checker()


def recall_of(result, reason):
    counts = result["by_reason"][reason]
    return counts["both"] / counts["labelled"]


def test_eval_set_precision_and_recall_meet_targets():
    cases = BENCH.load_cases()
    assert len(cases) >= 60
    assert {c["label"] for c in cases} == {"good", "bad"}
    result = BENCH.evaluate(cases, CHECKER)
    assert result["precision"] >= 0.9
    assert result["recall"] >= 0.8


@pytest.mark.parametrize("name", ["quality_eval.jsonl", "quality_eval_heldout.jsonl",
                                  "quality_real_tune.jsonl", "quality_injection_tune.jsonl"])
def test_no_good_case_is_flagged(name):
    assert BENCH.evaluate(BENCH.load_cases(DATA / name), CHECKER)["fp"] == 0


# Floors: the figures the checks reached on the tuning files when they were built.
@pytest.mark.parametrize("name, recall, reasons", [
    ("quality_real_tune.jsonl", 0.85, {"gibberish": 1.0, "prompt_leakage": 1.0, "repetition": 1.0,
                                       "ungrounded_object": 0.27}),
    ("quality_injection_tune.jsonl", 0.98, {"injection": 0.96, "prompt_leakage": 1.0, "repetition": 0.94}),
])
def test_tuning_sets_keep_their_recall(name, recall, reasons):
    result = BENCH.evaluate(BENCH.load_cases(DATA / name), CHECKER)
    assert result["recall"] >= recall
    for reason, floor in reasons.items():
        assert recall_of(result, reason) >= floor, reason


def test_recall_without_the_cases_on_wrong_annotations():
    cases = BENCH.load_cases(DATA / "quality_real_tune.jsonl", without_wrong_annotations=True)
    assert cases and not any(c["source"]["annotations_wrong"] for c in cases)
    assert BENCH.evaluate(cases, CHECKER)["recall"] >= 0.89
