"""The labelled evaluation set meets the issue's targets (see docs/quality.md)."""

import importlib.util
from pathlib import Path

from llavaforge.quality.checker import ConversationChecker
from llavaforge.config.check import CheckConfig

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("quality_eval", ROOT / "bench" / "quality_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eval_set_precision_and_recall_meet_targets():
    bench = _bench()
    cases = bench.load_cases()
    assert len(cases) >= 60
    assert {c["label"] for c in cases} == {"good", "bad"}
    result = bench.evaluate(cases, ConversationChecker(CheckConfig()))
    assert result["precision"] >= 0.9
    assert result["recall"] >= 0.8
