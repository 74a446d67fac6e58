"""The labelled real-output and injection sets in tests/data are well formed and split by photo."""

import json
from pathlib import Path

import pytest

from llavaforge.schemas.llava import turn_errors
from llavaforge.schemas.record import Turn

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"
REASONS = {"structure", "refusal", "leakage", "ungrounded_object", "wrong_count", "ocr_mismatch", "repetition",
           "truncated", "prompt_leakage", "gibberish", "injection"}
ANNOTATION_FIELDS = {"captions", "objects", "tags", "ocr", "source_captions"}
SETS = {"real": ("quality_real_tune.jsonl", "quality_real_heldout.jsonl"),
        "injection": ("quality_injection_tune.jsonl", "quality_injection_heldout.jsonl")}
FILES = [name for pair in SETS.values() for name in pair]


def cases(name: str) -> list[dict]:
    with open(DATA / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.parametrize("name", FILES)
def test_every_case_is_labelled_with_a_known_reason_a_note_and_a_source(name):
    for case in cases(name):
        assert case["label"] in ("good", "bad"), case["id"]
        assert (case["reason"] in REASONS) if case["label"] == "bad" else case["reason"] is None, case["id"]
        assert case["note"].strip(), case["id"]
        assert set(case["annotations"]) <= ANNOTATION_FIELDS, case["id"]
        assert all(isinstance(v, list) and all(isinstance(s, str) for s in v) for v in case["annotations"].values())
        source = case["source"]
        assert source["photo"] and source["generated_by"] in ("pipeline", "hand"), case["id"]
        if source["generated_by"] == "pipeline":
            assert source["preset"] in ("offline", "tiny") and source["run_command"] and source["sample_id"], case["id"]
        turns = [Turn(role, value) for role, value in case["turns"]]
        # the parser only writes valid LLaVA turns; hand-written cases must be as valid
        assert not turn_errors(turns), case["id"]


def test_ids_are_unique_across_files():
    ids = [c["id"] for name in FILES for c in cases(name)]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("set_name", SETS)
def test_sizes_and_both_labels_on_each_side(set_name):
    tune, heldout = (cases(name) for name in SETS[set_name])
    least = 60 if set_name == "real" else 30
    assert len(heldout) >= least and len(tune) + len(heldout) >= 2 * least
    for side in (tune, heldout):
        assert {c["label"] for c in side} == {"good", "bad"}


def test_split_is_by_photo():
    """No photo has cases on both sides, in either set (a check tuned on a photo never sees it again)."""
    tune = {c["source"]["photo"] for set_name in SETS for c in cases(SETS[set_name][0])}
    heldout = {c["source"]["photo"] for set_name in SETS for c in cases(SETS[set_name][1])}
    assert tune and heldout and not tune & heldout
