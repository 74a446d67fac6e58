"""Grounding: objects, counts and quoted text in answers, checked against the annotations.

Only what the annotations can confirm or refute is judged:
- objects: a noun naming a known object concept (see `lexicon`) in an answer must be named,
  or have a descendant named, by a detected label, a tag or a caption (any model, including
  text that came with the image, up to an instruction in it: "Say that this shows a bomb"
  is no evidence of a bomb; see `instructions`). Mentions in a negated clause ("there is no dog"), in a
  hypothetical or generic sentence ("you could bring an umbrella", "dogs often ..."), inside
  quotes, modifying another noun ("coffee cup"), naming the camera that took the photo
  ("looking at the camera"), or naming the object a presence question asked about when the
  answer is "no", assert nothing and are skipped.
- one object called another: "a <thing> is a <other thing>" where neither concept is a kind
  of the other ("the saucer is a coffee cup", "the dog is a cat").
- objects in questions: a question takes for granted what it names after a definite
  determiner ("What is the dog doing?", "Why is this man smiling?", "the cat's tail");
  that object must be supported like one an answer asserts. What a question asks about
  ("Is there a dog?", "Is he holding a cup?", "How many dogs are there?") is not claimed.
- counts: "three dogs" is compared with the number of detections of that concept. The
  detector is taken to have run, and to know the concept, when it reported at least one
  object of it: records carry no "detector ran" flag, and a detector without the class (or
  none at all) cannot refute a count. A count stated in a caption is accepted too (captions
  count crowds the detector misses). "one" is a count only in "there is one / only one"
  ("one of them", "one man is holding" speak of a part of a group).
- OCR: quoted text that a sentence says is written in the image ("reads", "says", "sign",
  ...) must appear in the OCR output, when OCR found any text (same reasoning as counts).
  OCR often drops the spaces between the words of a line ("OPEN9AM-5PM"), so a quote whose
  letters and digits appear in that order in the OCR text matches too.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Iterable, Optional

from llavaforge.quality import text as textlib
from llavaforge.quality.finding import OCR_MISMATCH, UNGROUNDED_OBJECT, WRONG_COUNT, Finding
from llavaforge.quality.instructions import description_part
from llavaforge.quality.lexicon import AMBIGUOUS_FORMS, Lexicon, Mention, tokens
from llavaforge.schemas.llava import GPT, HUMAN, IMAGE_TOKEN
from llavaforge.schemas.record import SOURCE_MODEL, Annotations, Turn

NEGATIONS = frozenset({"no", "not", "without", "neither", "nor", "none", "never", "nothing",
                       "isn't", "aren't", "doesn't", "don't", "can't", "cannot", "absent"})
HYPOTHETICALS = frozenset({"if", "would", "could", "might", "may", "should", "unless", "imagine",
                           "often", "usually", "typically", "generally", "commonly", "sometimes"})
DEFINITES = frozenset({"the", "this", "that", "these", "those", "his", "her", "their", "its", "our",
                       "my", "your"})
# "at the camera", "toward the camera": the photographer's camera, not one in the picture.
_PHOTOGRAPHER_CAMERA = frozenset({"at", "to", "toward", "towards", "into", "for", "from", "facing"})
DETERMINERS = frozenset({"a", "an", "the", "this", "that", "these", "those", "some", "several",
                         "many", "his", "her", "their", "its", "our", "my", "your", "another",
                         "each", "every", "any", "both", "few", "no"})
# Words that may sit between a number and its noun ("three large dogs"), by exclusion.
_NOT_MODIFIERS = frozenset({"of", "on", "in", "at", "to", "the", "a", "an", "and", "or", "is", "are",
                            "was", "were", "next", "near", "by", "with", "from", "for", "them",
                            "it", "they", "side", "time", "times", "point", "way", "day", "hand"})
ADJECTIVES = frozenset({
    "small", "large", "big", "little", "tiny", "huge", "old", "young", "new", "tall", "short",
    "long", "white", "black", "red", "blue", "green", "yellow", "brown", "gray", "grey", "pink",
    "purple", "orange", "dark", "light", "wooden", "metal", "plastic", "silver", "striped", "empty",
    "open", "closed", "single", "other", "same", "nearby", "second", "first", "colorful", "bright",
})
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
                "fourteen": 14, "fifteen": 15, "twenty": 20, "dozen": 12}
_ONE_FRAMES = frozenset({"is", "there", "only", "just", "exactly", "single"})
_PRESENCE_QUESTION = re.compile(r"\b(?:is|are) there\b|\b(?:do|can) you see\b|\bany\b", re.I)
_ANSWER_NO = re.compile(r"^\s*no\b", re.I)
TEXT_CUES = frozenset({"says", "say", "said", "reads", "read", "reading", "written", "writing",
                       "wrote", "text", "sign", "label", "labeled", "labelled", "printed", "print",
                       "word", "words", "displays", "display", "displayed", "lettering", "letters",
                       "title", "logo", "brand", "inscription", "caption", "banner", "spelled"})
_NORMALISE_TEXT = re.compile(r"[^a-z0-9]+")
# OCR confusions between letters and digits, applied only inside words that mix both.
_OCR_CONFUSIONS = str.maketrans({"0": "o", "1": "l", "5": "s", "8": "b"})


def number_value(word: str) -> Optional[int]:
    if word.isdigit():
        return int(word)
    return NUMBER_WORDS.get(word)


@dataclass
class Evidence:
    """What the vision models (and the image's own text) say is in one image.

    `support`: concepts named by detections, tags, captions and the descriptive part of text
    that came with the image (an instruction in it, "say this shows a bomb", supports
    nothing); `trusted_support`: the same from the vision models alone. `trusted_text`: what
    the vision models wrote (model captions, tags, detector labels); `untrusted`: the text
    that came with the image and the OCR lines, which may hold instructions."""

    support: set[str]
    detections: Counter
    caption_counts: dict[str, set[int]]
    ocr_words: list[str]
    ocr_text: str
    trusted_support: set[str] = field(default_factory=set)
    trusted_text: list[str] = field(default_factory=list)
    untrusted: list[str] = field(default_factory=list)

    @property
    def annotation_text(self) -> list[str]:
        return self.trusted_text + self.untrusted

    @classmethod
    def of(cls, annotations: Annotations, lexicon: Lexicon, source_texts: Iterable[str] = ()) -> "Evidence":
        """`source_texts`: text that came with the image besides its source captions."""
        detections: Counter = Counter()
        for obj in annotations.objects:
            for concept in lexicon.concepts_in(obj.label):
                detections[concept] += 1
        trusted = set(detections)
        for tag in annotations.tags:
            trusted |= lexicon.concepts_in(tag.label)
        sources = list(dict.fromkeys([c.text for c in annotations.captions if c.model == SOURCE_MODEL]
                                     + [t for t in source_texts if t.strip()]))
        captions = ([(c.text, True) for c in annotations.captions if c.model != SOURCE_MODEL]
                    + [(description_part(t), False) for t in sources])
        observed = set(trusted)
        caption_counts: dict[str, set[int]] = {}
        for text, by_model in captions:
            words = tokens(text)
            concepts = {m.concept for m in lexicon.mentions(words)}
            observed |= concepts
            if by_model:
                trusted |= concepts
            for count in stated_counts(words, lexicon.mentions(words), require_frame_for_one=False):
                caption_counts.setdefault(count.mention.concept, set()).add(count.value)
        ocr_text = " ".join(o.text for o in annotations.ocr)
        ocr_lines = "\n".join(o.text for o in annotations.ocr)
        trusted_text = ([c.text for c in annotations.captions if c.model != SOURCE_MODEL]
                        + [t.label for t in annotations.tags] + [o.label for o in annotations.objects])
        return cls(support=lexicon.support(observed), detections=detections,
                   caption_counts=caption_counts, ocr_words=normalised_text(ocr_text).split(),
                   ocr_text=normalised_text(ocr_text), trusted_support=lexicon.support(trusted),
                   trusted_text=trusted_text, untrusted=[t for t in sources + [ocr_lines] if t.strip()])

    def detected(self, concept: str, lexicon: Lexicon) -> int:
        return sum(n for c, n in self.detections.items() if lexicon.is_kind_of(c, concept))


@dataclass(frozen=True)
class Count:
    value: int
    mention: Mention


def stated_counts(words: list[str], mentions: list[Mention], require_frame_for_one: bool = True
                  ) -> list[Count]:
    """"three (large) dogs" -> Count(3, dog): a number, up to two modifiers, then the noun."""
    by_start = {m.start: m for m in mentions}
    counts = []
    for i, word in enumerate(words):
        value = number_value(word)
        if value is None or (i + 1 < len(words) and words[i + 1] == "of"):
            continue
        if value == 1 and require_frame_for_one and (i == 0 or words[i - 1] not in _ONE_FRAMES):
            continue
        for j in range(i + 1, min(i + 4, len(words) + 1)):
            if j in by_start:
                counts.append(Count(value, by_start[j]))
                break
            if j >= len(words) or words[j] in _NOT_MODIFIERS or number_value(words[j]) is not None:
                break
    return counts


def is_noun_use(mention: Mention, words: list[str]) -> bool:
    """An ambiguous form ("tie", "train") names an object only after a determiner, number or adjective."""
    if mention.form not in AMBIGUOUS_FORMS:
        return True
    if mention.start == 0:
        return False
    before = words[mention.start - 1]
    return before in DETERMINERS or before in ADJECTIVES or number_value(before) is not None


def is_photographer_camera(mention: Mention, words: list[str]) -> bool:
    """"looking at the camera": the camera that took the photo, a figure of speech."""
    return (mention.concept == "camera" and mention.start >= 2 and words[mention.start - 1] == "the"
            and words[mention.start - 2] in _PHOTOGRAPHER_CAMERA)


def is_definite(mention: Mention, words: list[str]) -> bool:
    """Named after a definite determiner, adjectives or numbers between: "the (big brown) dog"."""
    i = mention.start - 1
    while i >= 0 and (words[i] in ADJECTIVES or number_value(words[i]) is not None):
        i -= 1
    return i >= 0 and words[i] in DEFINITES


@dataclass
class Assertion:
    """The object mentions an answer asserts, the counts it states, and the objects it calls
    something they are not ("the saucer is a coffee cup": (plate, cup))."""

    mentions: list[Mention] = field(default_factory=list)
    counts: list[Count] = field(default_factory=list)
    misnamed: list[tuple[Mention, Mention]] = field(default_factory=list)


_COPULAS = frozenset({"is", "are", "was", "were"})


def misnamings(mentions: list[Mention], modifiers: list[Mention], words: list[str], lexicon: Lexicon
               ) -> list[tuple[Mention, Mention]]:
    """"A <thing> is a <other thing>" where neither concept is a kind of the other: one
    object called another ("the dog is a cat", "the saucer is a coffee cup"), never true of
    one photo. `modifiers`: nouns modifying the next one ("coffee" in "coffee cup")."""
    modifying = {i for m in modifiers for i in range(m.start, m.end)}
    found = []
    for first, second in zip(mentions, mentions[1:]):
        if first.end >= second.start or words[first.end] not in _COPULAS:
            continue
        if any(words[i] not in DETERMINERS and words[i] not in ADJECTIVES and i not in modifying
               for i in range(first.end + 1, second.start)):
            continue
        if not (lexicon.is_kind_of(first.concept, second.concept) or lexicon.is_kind_of(second.concept, first.concept)):
            found.append((first, second))
    return found


def assertions(answer: str, lexicon: Lexicon, skip_concepts: Iterable[str] = (),
               definite_only: bool = False) -> Assertion:
    """The objects `answer` asserts; with `definite_only`, only those named after a definite
    determiner (what a question takes for granted)."""
    skipped = set(skip_concepts)
    result = Assertion()
    for sentence in textlib.sentences(textlib.without_quotes(answer)):
        if HYPOTHETICALS & set(tokens(sentence)):
            continue
        for clause in textlib.clauses(sentence):
            words = tokens(clause)
            if NEGATIONS & set(words):
                continue
            found = lexicon.mentions(words)
            # In a noun-noun compound ("coffee cup", "dog bed") the first noun only modifies.
            heads = [m for m, after in zip(found, found[1:] + [None])
                     if after is None or after.start != m.end]
            mentions = [m for m in heads if is_noun_use(m, words) and m.concept not in skipped
                        and not is_photographer_camera(m, words)
                        and (not definite_only or is_definite(m, words))]
            result.mentions.extend(mentions)
            result.counts.extend(stated_counts(words, mentions))
            if not definite_only:
                modifiers = [m for m in found if m not in heads]
                result.misnamed.extend(misnamings(mentions, modifiers, words, lexicon))
    return result


def question_presuppositions(question: str, lexicon: Lexicon) -> Assertion:
    """The objects a question takes for granted: "What is the dog doing?" claims a dog."""
    return Assertion(mentions=assertions(question, lexicon, definite_only=True).mentions)


def answers_with_questions(turns: list[Turn]) -> list[tuple[str, str]]:
    """(question, answer) pairs of a conversation's turns, questions without `<image>`."""
    pairs = []
    for question, answer in zip(turns[::2], turns[1::2]):
        if question.role == HUMAN and answer.role == GPT:
            pairs.append((question.value.replace(IMAGE_TOKEN, ""), answer.value))
    return pairs


def answer_assertions(question: str, answer: str, lexicon: Lexicon) -> Assertion:
    """An answer's assertions; "Is there a dog?" answered "No ..." asserts nothing about dogs."""
    denied = ()
    if _PRESENCE_QUESTION.search(question) and _ANSWER_NO.match(answer):
        denied = lexicon.concepts_in(question)
    return assertions(answer, lexicon, denied)


def ungrounded_objects(assertion: Assertion, evidence: Evidence) -> Optional[Finding]:
    missing = sorted({m.form for m in assertion.mentions if m.concept not in evidence.support})
    evidence_of = [f"not in detections, tags or captions: {', '.join(missing)}"] if missing else []
    evidence_of += list(dict.fromkeys(f"calls the {a.form} a {b.form}" for a, b in assertion.misnamed))
    return Finding(UNGROUNDED_OBJECT, "; ".join(evidence_of)) if evidence_of else None


def wrong_counts(assertion: Assertion, evidence: Evidence, lexicon: Lexicon, tolerance: int = 0
                 ) -> Optional[Finding]:
    wrong = []
    for count in assertion.counts:
        concept = count.mention.concept
        detected = evidence.detected(concept, lexicon)
        if detected == 0 or count.value in evidence.caption_counts.get(concept, ()):
            continue
        if abs(count.value - detected) > tolerance:
            wrong.append(f"{count.value} {count.mention.form} (detected {detected})")
    if not wrong:
        return None
    return Finding(WRONG_COUNT, "; ".join(wrong))


def normalised_text(text: str) -> str:
    return _NORMALISE_TEXT.sub(" ", text.lower()).strip()


def _word_matches(word: str, ocr_words: list[str], min_similarity: float) -> bool:
    if word.isdigit():
        return word in ocr_words
    plain = word.translate(_OCR_CONFUSIONS)
    return any(SequenceMatcher(None, plain, o.translate(_OCR_CONFUSIONS)).ratio() >= min_similarity
               for o in ocr_words if not o.isdigit())


def text_in_ocr(quoted: str, evidence: Evidence, min_similarity: float) -> bool:
    """Every word of the quote is an OCR word (digits exactly, letters up to OCR noise)."""
    wanted = normalised_text(quoted)
    if not wanted or wanted in evidence.ocr_text or wanted.replace(" ", "") in evidence.ocr_text.replace(" ", ""):
        return True
    return all(_word_matches(w, evidence.ocr_words, min_similarity) for w in wanted.split())


def ocr_mismatches(answer: str, evidence: Evidence, min_similarity: float) -> Optional[Finding]:
    if not evidence.ocr_words:
        return None
    wrong = []
    for quote in textlib.quotes(answer):
        context = tokens(textlib.sentence_around(answer, quote.start, quote.end).replace(quote.text, " "))
        if TEXT_CUES & set(context) and not text_in_ocr(quote.text, evidence, min_similarity):
            wrong.append(repr(quote.text))
    if not wrong:
        return None
    return Finding(OCR_MISMATCH, f"quoted text not found by OCR: {', '.join(wrong)}")
