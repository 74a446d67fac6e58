"""What a check reports: the reason (a stable name, counted in stats.json) and the evidence."""

from __future__ import annotations

from typing import NamedTuple

GIBBERISH = "gibberish"
INJECTION = "injection"
PROMPT_LEAKAGE = "prompt_leakage"
STRUCTURE = "structure"
REFUSAL = "refusal"
LEAKAGE = "leakage"
UNGROUNDED_OBJECT = "ungrounded_object"
WRONG_COUNT = "wrong_count"
OCR_MISMATCH = "ocr_mismatch"
REPETITION = "repetition"
TRUNCATED = "truncated"
# The order findings are reported in: the first failing reject-severity reason names the reject.
# The newer checks come first: text that is not language, obeys injected text or copies the
# prompt is unusable whatever else is wrong with it.
REASONS = (GIBBERISH, INJECTION, PROMPT_LEAKAGE, STRUCTURE, REFUSAL, LEAKAGE, UNGROUNDED_OBJECT,
           WRONG_COUNT, OCR_MISMATCH, REPETITION, TRUNCATED)


class Finding(NamedTuple):
    reason: str
    detail: str
