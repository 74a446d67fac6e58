"""What a check reports: the reason (a stable name, counted in stats.json) and the evidence."""

from __future__ import annotations

from typing import NamedTuple

STRUCTURE = "structure"
REFUSAL = "refusal"
LEAKAGE = "leakage"
UNGROUNDED_OBJECT = "ungrounded_object"
WRONG_COUNT = "wrong_count"
OCR_MISMATCH = "ocr_mismatch"
REPETITION = "repetition"
TRUNCATED = "truncated"
# The order findings are reported in: the first failing reject-severity reason names the reject.
REASONS = (STRUCTURE, REFUSAL, LEAKAGE, UNGROUNDED_OBJECT, WRONG_COUNT, OCR_MISMATCH, REPETITION, TRUNCATED)


class Finding(NamedTuple):
    reason: str
    detail: str
