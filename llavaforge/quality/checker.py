"""All checks on one conversation, configured once from the recipe's `check` section."""

from __future__ import annotations

import re
from typing import Iterable, NamedTuple, Optional

from llavaforge.quality.finding import (GIBBERISH, INJECTION, LEAKAGE, OCR_MISMATCH, PROMPT_LEAKAGE, REASONS,
                                        REFUSAL, REPETITION, STRUCTURE, TRUNCATED, UNGROUNDED_OBJECT,
                                        WRONG_COUNT, Finding)
from llavaforge.quality.gibberish import gibberish_finding, known_words
from llavaforge.quality.grounding import (Evidence, answer_assertions, answers_with_questions,
                                          ocr_mismatches, question_presuppositions, ungrounded_objects,
                                          wrong_counts)
from llavaforge.quality.injection import injection_finding
from llavaforge.quality.lexicon import Lexicon
from llavaforge.quality.phrases import phrase_finding, phrase_pattern
from llavaforge.quality.repetition import repetition_finding, truncation_finding
from llavaforge.quality.scaffolding import Scaffolding, ScaffoldingMatcher
from llavaforge.quality.structure import structure_finding
from llavaforge.schemas.llava import GPT
from llavaforge.schemas.record import Annotations, Conversation
from llavaforge.config.check import CheckConfig, CheckSwitch


class Verdict(NamedTuple):
    """`rejected`: the finding that rejects the sample (None when kept); `flags`: the reasons
    of flag-severity findings; `findings`: everything that fired."""

    rejected: Optional[Finding]
    flags: list[str]
    findings: list[Finding]


class ConversationChecker:
    """`scaffolding`: what the generating LLM's prompt held besides the image's notes (see
    `prompts.scaffolding.prompt_scaffolding`); without it `prompt_leakage` finds nothing."""

    def __init__(self, config: CheckConfig, scaffolding: Scaffolding = Scaffolding()) -> None:
        self.config = config
        self.lexicon = Lexicon.default(config.objects.synonyms)
        self._lexicon_words = known_words(self.lexicon.forms)
        self._templates = [re.compile(p) for p in config.structure.template_patterns]
        self._refusal = phrase_pattern(config.refusal.phrases, config.refusal.patterns)
        self._leakage = phrase_pattern(config.leakage.phrases, config.leakage.patterns)
        self._scaffolding = ScaffoldingMatcher(scaffolding, self.lexicon, config.prompt_leakage.min_copied_words,
                                               config.prompt_leakage.min_copied_words_unsupported)
        self._switches: dict[str, CheckSwitch] = {
            GIBBERISH: config.gibberish, INJECTION: config.injection, PROMPT_LEAKAGE: config.prompt_leakage,
            STRUCTURE: config.structure, REFUSAL: config.refusal, LEAKAGE: config.leakage,
            UNGROUNDED_OBJECT: config.objects, WRONG_COUNT: config.counts, OCR_MISMATCH: config.ocr,
            REPETITION: config.repetition, TRUNCATED: config.truncated}

    @property
    def any_enabled(self) -> bool:
        return any(s.enabled for s in self._switches.values())

    def evidence(self, annotations: Annotations, source_texts: Iterable[str] = ()) -> Evidence:
        """`source_texts`: text that came with the image and is not (yet) a source caption."""
        return Evidence.of(annotations, self.lexicon, source_texts)

    def findings(self, conversation: Conversation, evidence: Evidence) -> list[Finding]:
        """Every enabled check that fires, in `finding.REASONS` order."""
        on = {reason for reason, switch in self._switches.items() if switch.enabled}
        turns = conversation.turns
        found = []
        known = self._lexicon_words | known_words(evidence.annotation_text)
        if GIBBERISH in on:
            found.append(gibberish_finding(turns, known, self.config.gibberish.min_words,
                                           self.config.gibberish.max_unknown_ratio))
        if INJECTION in on:
            found.append(injection_finding(turns, evidence, self.lexicon, self.config.injection.min_echoed_words,
                                           self.config.injection.min_english_ratio, known))
        if PROMPT_LEAKAGE in on:
            found.append(self._scaffolding.finding(turns, evidence))
        if STRUCTURE in on:
            found.append(structure_finding(conversation, self.config.structure, self._templates))
        answers = [t.value for t in turns if t.role == GPT]
        if REFUSAL in on:
            found.append(phrase_finding(REFUSAL, answers, self._refusal))
        if LEAKAGE in on:
            found.append(phrase_finding(LEAKAGE, answers, self._leakage))
        pairs = answers_with_questions(turns)
        assertions = [answer_assertions(q, a, self.lexicon) for q, a in pairs]
        if UNGROUNDED_OBJECT in on:
            claimed = assertions + ([question_presuppositions(q, self.lexicon) for q, _ in pairs]
                                    if self.config.objects.questions else [])
            found += [ungrounded_objects(a, evidence) for a in claimed]
        if WRONG_COUNT in on:
            found += [wrong_counts(a, evidence, self.lexicon, self.config.counts.tolerance)
                      for a in assertions]
        if OCR_MISMATCH in on:
            found += [ocr_mismatches(a, evidence, self.config.ocr.min_similarity) for _, a in pairs]
        if REPETITION in on:
            found.append(repetition_finding(conversation, self.config.repetition))
        if TRUNCATED in on:
            found.append(truncation_finding(conversation))
        return _merge([f for f in found if f is not None])

    def verdict(self, conversation: Conversation, evidence: Evidence) -> Verdict:
        findings = self.findings(conversation, evidence)
        rejecting = [f for f in findings if self._switches[f.reason].severity == "reject"]
        flags = [f.reason for f in findings if self._switches[f.reason].severity == "flag"]
        rejected = None
        if rejecting:
            others = "; ".join(f"{f.reason}: {f.detail}" for f in findings if f != rejecting[0])
            detail = rejecting[0].detail + (f" (also {others})" if others else "")
            rejected = Finding(rejecting[0].reason, detail)
        return Verdict(rejected, flags, findings)


def _merge(findings: list[Finding]) -> list[Finding]:
    """One finding per reason (evidence of several turns joined), in `REASONS` order."""
    merged: dict[str, list[str]] = {}
    for f in findings:
        merged.setdefault(f.reason, []).append(f.detail)
    return [Finding(reason, " | ".join(merged[reason])) for reason in REASONS if reason in merged]
