"""Recipe section `check`: quality and grounding checks on generated conversations, and
dedup of questions asked of many images."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from llavaforge.config.base import StrictModel

Severity = Literal["reject", "flag"]

DEFAULT_REFUSAL_PHRASES = [
    "as an ai", "as a language model", "as an ai language model", "i cannot see", "i can't see",
    "i am unable to", "i'm unable to", "unable to view", "unable to see", "i cannot view",
    "i can't view", "i cannot provide", "i can't provide", "i don't have access",
    "i do not have access", "i do not have the ability", "i don't have the ability",
    "i'm sorry", "i am sorry", "i apologize", "i cannot determine", "i can't determine",
    "cannot assist", "can't assist", "not able to see",
]
DEFAULT_LEAKAGE_PHRASES = [
    "caption", "captions", "captioned", "the description", "image description",
    "given description", "provided description", "description mentions", "described in",
    "bounding box", "bounding boxes", "coordinates", "the text says", "the text mentions",
    "according to the text", "the text states", "information provided", "provided information",
    "given information", "information given", "the annotations", "annotated", "detected objects",
    "object detections", "detection results", "the tags", "confidence score", "the prompt",
    "as mentioned", "as described", "symbolic representation",
]
DEFAULT_LEAKAGE_PATTERNS = [
    # a box or point as normalised coordinates: [0.21, 0.30, ...] or (0.2, 0.3)
    r"[\[(]\s*[01]?\.\d+\s*,\s*[01]?\.\d+",
]
DEFAULT_TEMPLATE_PATTERNS = [
    r"<\|[a-z_]+\|>",                              # chat-template special tokens
    r"</?s>|\[/?INST\]|<<SYS>>|<start_of_turn>|<end_of_turn>",
    r"\{[a-z_]+\}",                                # unfilled prompt placeholders
    r"(?im)^\s*(human|gpt|user|assistant|system|question|answer|q|a)\s*:",  # role labels
    r"(?m)^\s*(===|###)",                          # block separators of the raw LLM output
]


def _check_regexes(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as e:
            raise ValueError(f"invalid regular expression {pattern!r}: {e}") from e
    return patterns


class CheckSwitch(StrictModel):
    enabled: bool = Field(default=True, description="Run this check.")
    severity: Severity = Field(
        default="reject",
        description="`reject`: the sample becomes a reject; `flag`: it is kept with the reason "
                    "in its `flags` column.")


class LengthBounds(StrictModel):
    min: int = Field(default=1, ge=0, description="Fewest characters (after stripping whitespace).")
    max: int = Field(default=4000, ge=1, description="Most characters.")

    @model_validator(mode="after")
    def _ordered(self) -> "LengthBounds":
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


# Per-task limits are [min, max] pairs rather than models so the recipe reference (JSON) shows them.
MinMax = tuple[int, int]


def _check_min_max(limits: dict[str, MinMax]) -> dict[str, MinMax]:
    for task, (low, high) in limits.items():
        if not 0 <= low <= high:
            raise ValueError(f"{task}: [min, max] must satisfy 0 <= min <= max, got [{low}, {high}]")
    return limits


class StructureCheck(CheckSwitch):
    question_chars: LengthBounds = Field(
        default_factory=lambda: LengthBounds(min=2, max=1000),
        description="Length of each human turn (without `<image>`).")
    answer_chars: LengthBounds = Field(
        default_factory=lambda: LengthBounds(min=1, max=4000),
        description="Length of each gpt turn, for task types not in `answer_chars_by_task`.")
    answer_chars_by_task: dict[str, MinMax] = Field(
        default_factory=lambda: {"detail": (50, 4000), "reasoning": (20, 4000)},
        description="[min, max] characters of each gpt turn per task type.")
    max_total_chars: int = Field(default=16000, ge=1, description="Most characters over all turns.")
    turn_pairs: dict[str, MinMax] = Field(
        default_factory=lambda: {"conversation": (1, 10), "detail": (1, 1), "reasoning": (1, 1)},
        description="[min, max] question/answer pairs per task type; task types not listed are "
                    "not limited.")
    template_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TEMPLATE_PATTERNS),
        description="Regular expressions for leftover template markers and role labels in any turn.")

    _validate_patterns = field_validator("template_patterns")(_check_regexes)
    _validate_limits = field_validator("answer_chars_by_task", "turn_pairs")(_check_min_max)


class PhraseCheck(CheckSwitch):
    phrases: list[str] = Field(
        default_factory=list,
        description="Phrases matched in gpt turns, case-insensitively, on word boundaries.")
    patterns: list[str] = Field(
        default_factory=list, description="Regular expressions matched in gpt turns.")

    _validate_patterns = field_validator("patterns")(_check_regexes)


class RefusalCheck(PhraseCheck):
    phrases: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REFUSAL_PHRASES),
        description="Refusals and AI self-references, matched in gpt turns, case-insensitively, "
                    "on word boundaries.")


class LeakageCheck(PhraseCheck):
    phrases: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LEAKAGE_PHRASES),
        description="Words that give away the text description the LLM saw (captions, boxes, "
                    "the prompt), matched in gpt turns, case-insensitively, on word boundaries.")
    patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LEAKAGE_PATTERNS),
        description="Regular expressions for leakage, e.g. normalised box coordinates.")


class ObjectCheck(CheckSwitch):
    synonyms: dict[str, list[str]] = Field(
        default_factory=dict,
        description="More words per object concept, added to the built-in map, e.g. "
                    "{cup: [tumbler], person: [referee]}; a new concept name adds a concept.")
    questions: bool = Field(
        default=True,
        description="Also check the objects a question takes for granted (\"What is the dog doing?\" "
                    "needs a dog); objects a question asks about (\"Is there a dog?\", \"Is he "
                    "holding a cup?\") are not claimed by it.")


class CountCheck(CheckSwitch):
    tolerance: int = Field(
        default=0, ge=0, description="Largest difference between a stated and a detected count that passes.")


class OcrCheck(CheckSwitch):
    min_similarity: float = Field(
        default=0.8, ge=0.0, le=1.0,
        description="Similarity (0..1) a quoted word needs with an OCR word to match (OCR noise); "
                    "numbers must match exactly.")


class RepetitionCheck(CheckSwitch):
    max_sentence_repeats: int = Field(
        default=2, ge=1,
        description="A sentence may appear this many times in one answer; more is a generation loop. "
                    "A question asked twice in one conversation also fires this check.")
    max_consecutive_repeats: int = Field(
        default=2, ge=1,
        description="A phrase of up to 8 words may follow itself this many times (\"a bomb, a bomb\"); "
                    "more is a loop (\"PWNED PWNED PWNED\").")
    phrase_words: int = Field(
        default=4, ge=2, description="Length in words of the phrases `max_phrase_coverage` counts.")
    max_phrase_coverage: float = Field(
        default=0.5, gt=0.0, le=1.0,
        description="Largest share of an answer's words that may lie in repeated phrases of "
                    "`phrase_words` words (a phrase said twice counts when it holds two content "
                    "words, one said three times always); more is a phrase loop.")
    long_phrase_words: int = Field(
        default=10, ge=2, description="A phrase of this many words said twice in one answer is a loop.")
    max_turn_similarity: float = Field(
        default=0.9, gt=0.0, le=1.0,
        description="Two questions, or two answers of 4 words or more, of one conversation whose "
                    "word sequences are at least this similar (0..1) are the same turn asked or "
                    "given twice.")


class GibberishCheck(CheckSwitch):
    min_words: int = Field(
        default=4, ge=1,
        description="Token soup is judged on turns with at least this many word-like tokens; "
                    "invalid characters (U+FFFD, control characters) fire on any turn.")
    max_unknown_ratio: float = Field(
        default=0.3, ge=0.0, le=1.0,
        description="Largest share of a turn's tokens (outside quotes) that may be neither English "
                    "words nor words of the image's annotations.")


class PromptLeakageCheck(CheckSwitch):
    min_copied_words: int = Field(
        default=8, ge=2,
        description="A turn repeating this many consecutive words of the prompt library (system "
                    "messages, few-shot examples, query templates) copies the prompt.")
    min_copied_words_unsupported: int = Field(
        default=5, ge=2,
        description="Fewer copied words suffice when they name an object the annotations do not "
                    "support: the few-shot example's frisbee, not this image's.")


class InjectionCheck(CheckSwitch):
    min_echoed_words: int = Field(
        default=4, ge=2,
        description="A turn repeating this many consecutive words of an instruction found in "
                    "untrusted text (source text, OCR), outside a quote or a report of what the "
                    "text says, obeys it.")
    min_english_ratio: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="When untrusted text asks for another language, an answer with a smaller "
                    "share of English words obeys it.")


class TruncationCheck(CheckSwitch):
    severity: Severity = Field(
        default="flag",
        description="Answers that stop mid-sentence (the token limit cut them): flagged by default.")


class QuestionDedupConfig(StrictModel):
    enabled: bool = Field(
        default=True, description="Limit how often one first question appears in the dataset.")
    max_copies: int = Field(
        default=100, ge=1, description="Most samples kept per (near-)identical first question.")
    method: Literal["minhash"] = Field(
        default="minhash",
        description="How questions are compared: `minhash` (normalised text, character shingles).")
    threshold: float = Field(
        default=0.8, gt=0.0, le=1.0,
        description="Estimated Jaccard similarity of shingle sets from which two questions are the same.")
    tasks: list[str] = Field(
        default_factory=lambda: ["conversation", "reasoning"],
        description="Task types whose first questions are deduplicated (`detail` draws its "
                    "instruction from a fixed list on purpose).")


class CheckConfig(StrictModel):
    """Checks on generated conversations; each check rejects or flags a sample."""

    enabled: bool = Field(default=True, description="Run the checks stage at all.")
    structure: StructureCheck = Field(
        default_factory=StructureCheck,
        description="LLaVA validity, lengths, turns per task, template leftovers.")
    refusal: RefusalCheck = Field(default_factory=RefusalCheck, description="Refusals in answers.")
    leakage: LeakageCheck = Field(default_factory=LeakageCheck,
                                  description="Answers that mention the description instead of the image.")
    objects: ObjectCheck = Field(default_factory=ObjectCheck,
                                 description="Objects named in answers must be in the annotations.")
    counts: CountCheck = Field(
        default_factory=CountCheck,
        description="Counts in answers must match detections (when a detector saw the object).")
    ocr: OcrCheck = Field(default_factory=OcrCheck,
                          description="Quoted text said to be in the image must be in the OCR output.")
    repetition: RepetitionCheck = Field(
        default_factory=RepetitionCheck,
        description="Generation loops: repeated sentences, phrases, answers and questions.")
    gibberish: GibberishCheck = Field(
        default_factory=GibberishCheck,
        description="Text that is not language: invalid or replacement characters, token soup.")
    prompt_leakage: PromptLeakageCheck = Field(
        default_factory=PromptLeakageCheck,
        description="Text of the prompt library or the context scaffolding (headers, `<<<` fences) "
                    "in a turn.")
    injection: InjectionCheck = Field(
        default_factory=InjectionCheck,
        description="Turns that obey or echo an instruction found in untrusted text (source text, OCR).")
    truncated: TruncationCheck = Field(
        default_factory=TruncationCheck, description="Answers cut off mid-sentence.")
    questions: QuestionDedupConfig = Field(default_factory=QuestionDedupConfig,
                                           description="Dedup of first questions across the dataset.")
