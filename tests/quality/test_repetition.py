import random

import pytest

from llavaforge.quality.checker import ConversationChecker
from llavaforge.quality.repetition import (MAX_LOOP_UNIT, consecutive_loop, phrase_coverage, repetition_finding,
                                           truncation_finding, words)
from llavaforge.schemas.record import Annotations, Conversation, Turn
from llavaforge.config.check import CheckConfig, RepetitionCheck

DEFAULT = RepetitionCheck()

# Written the way a good LLaVA detail answer reads: long, with the phrases real descriptions
# reuse ("on the left", "of the table", "in the background"), and no loop.
NATURAL_ANSWERS = [
    "The image shows a busy kitchen with a man standing at the stove on the left side of the room. "
    "He is stirring a large pot with a wooden spoon, and steam rises from it. On the counter to the "
    "right of the stove there is a cutting board with chopped carrots and an onion, next to a knife. "
    "A second pot sits on the back burner, and a kettle stands on the counter near the sink. In the "
    "background, shelves hold jars of spices, and a window lets daylight into the kitchen.",
    "Two dogs are playing in a park on a sunny afternoon. The dog on the left is a golden retriever "
    "holding a red ball in its mouth, while the dog on the right, a smaller black terrier, is jumping "
    "toward it. Behind them a wooden bench stands on the grass, and a few trees line the path at the "
    "back of the picture. A woman on the bench is watching the dogs and holding a leash.",
    "The dog on the left is bigger than the dog on the right.",
    "A city street at dusk: cars wait at a red traffic light while pedestrians cross in front of them. "
    "On the left side of the street, a row of shops has its lights on, and a man on the left side of "
    "the crosswalk carries an umbrella. A bus is parked on the right side of the street, and above it "
    "a sign on the building reads \"HOTEL\". The sky is dark blue, and the street lamps are lit.",
    "Three people sit around a dining table with plates of food in front of them. The woman at the "
    "head of the table is raising a glass, the man to her right is cutting a piece of meat, and the "
    "child on her left is reaching for a bowl of salad. A bottle of wine and a basket of bread stand "
    "in the middle of the table, and a lamp hangs above it.",
]


def conversation(*values, task="conversation"):
    return Conversation(task=task, turns=[Turn("human" if i % 2 == 0 else "gpt", v) for i, v in enumerate(values)])


def test_sentence_loop_is_repetition():
    c = conversation("<image>\nWhat is this rocket doing?",
                     "It's a drill. It's a drill. It's a drill. It's a drill.")
    finding = repetition_finding(c, DEFAULT)
    assert finding.reason == "repetition" and "4 times" in finding.detail


def test_same_question_twice_is_repetition():
    c = conversation("<image>\nWhat is the wool?", "Wool from a sheep.", "What is the wool?", "Still wool.")
    assert "asked 2 times" in repetition_finding(c, DEFAULT).detail


def test_varied_answers_are_not_repetition():
    c = conversation("<image>\nWhat is on the table?", "A cup of coffee. A spoon lies beside it.",
                     "What color is the cup?", "The cup is white.")
    assert repetition_finding(c, DEFAULT) is None


@pytest.mark.parametrize("answer", [
    "PWNED PWNED PWNED PWNED PWNED PWNED PWNED PWNED PWNED PWNED PWNED PWNED PWNED PWNED PWNED PWNED",
    "PWNED:\nPWNED:\nPWNED:\nPWNED:",
    "It shows a bomb, a bomb, a bomb, a bomb.",
    "The nematode is a type of worm that is a type of worm that is a type of worm that is a type of worm.",
    "The tiger cat is a cat that is a cat that is a cat that is a cat",
])
def test_phrase_following_itself_is_a_loop(answer):
    assert "in a row" in repetition_finding(conversation("<image>\nDescribe it.", answer), DEFAULT).detail


@pytest.mark.parametrize("answer", [
    # phrase loops spread over the answer, each sentence different
    "The brick is grayscale, so it's a grayscale brick. The texture is grayscale, so it's a brick. "
    "The grey texture is grayscale, so it's a brick",
    "The best way to start a morning coffee at a cafe is to start with a cafe, and the best way to "
    "start a morning coffee is to start with a cafe.",
    "A glass of espresso is a glass of espresso.",
])
def test_repeated_phrases_over_an_answer_are_a_loop(answer):
    assert "repeated phrases" in repetition_finding(conversation("<image>\nWhat is it?", answer), DEFAULT).detail


def test_a_long_phrase_said_twice_is_a_loop():
    answer = ("The temple is a Chinese temple with a curved roof and red pillars at the front. Around it, "
              "tall green trees grow on a hill, and a stone path leads up to its door from the lake shore, "
              "where small boats are tied to a wooden pier and a few visitors walk along the water. "
              "Text: the temple is a Chinese temple with a curved roof and red pillars at the front.")
    assert "said twice" in repetition_finding(conversation("<image>\nWhat is it?", answer), DEFAULT).detail


@pytest.mark.parametrize("answer", NATURAL_ANSWERS)
def test_natural_descriptions_are_not_loops(answer):
    assert repetition_finding(conversation("<image>\nDescribe the image in detail.", answer), DEFAULT) is None
    assert phrase_coverage(words(answer), DEFAULT.phrase_words) < 0.25


def test_consecutive_loop_needs_more_than_the_limit():
    assert consecutive_loop(words("very very tall"), 2) is None
    assert consecutive_loop(words("no no no no"), 2) == ("no", 4)


def looping_phrase_by_comparing_slices(tokens, max_repeats):
    """The definition, checked the slow way: every unit, every start, unit by unit."""
    for unit in range(1, MAX_LOOP_UNIT + 1):
        for start in range(len(tokens) - unit * (max_repeats + 1) + 1):
            repeats = 1
            while tokens[start + repeats * unit:start + (repeats + 1) * unit] == tokens[start:start + unit]:
                repeats += 1
            if repeats > max_repeats:
                return " ".join(tokens[start:start + unit]), repeats
    return None


def test_consecutive_loop_finds_what_comparing_slices_finds():
    rng = random.Random(0)
    for _ in range(3000):
        vocabulary = rng.sample("a b c d e".split(), rng.randint(1, 5))
        tokens = [rng.choice(vocabulary) for _ in range(rng.randint(0, 40))]
        if rng.random() < 0.5 and tokens:  # plant a loop of a longer unit
            at, unit = rng.randrange(len(tokens)), rng.randint(1, MAX_LOOP_UNIT)
            tokens[at:at] = tokens[at:at + unit] * rng.randint(1, 5)
        max_repeats = rng.randint(1, 4)
        assert consecutive_loop(tokens, max_repeats) == looping_phrase_by_comparing_slices(tokens, max_repeats)


def test_same_or_nearly_same_answer_to_two_questions_is_repetition():
    same = conversation("<image>\nWhat is the texture of the brick?", "The brick is grainy, with a grayscale finish.",
                        "What is the grainy texture of the brick?", "The brick is grainy, with a grayscale finish.")
    detail = repetition_finding(same, DEFAULT).detail
    assert "answer given 2 times" in detail and "nearly the same question" in detail
    near = conversation("<image>\nWhat is the mountain?", "The palace, a beautiful mountain with skiers on the slope.",
                        "What is the palace?", "The palace is a beautiful mountain with skiers on the slope.")
    assert "nearly the same answer" in repetition_finding(near, DEFAULT).detail


def test_short_equal_answers_and_similar_but_different_questions_are_fine():
    c = conversation("<image>\nHow many dogs are there?", "Two.", "How many cats are there?", "Two.",
                     "What is the person wearing?", "A red jacket and jeans.",
                     "What is the person holding?", "A leash in the left hand.")
    assert repetition_finding(c, DEFAULT) is None


def test_cut_off_answer_is_truncated_but_finished_ones_are_not():
    assert truncation_finding(conversation("<image>\nDescribe it.", "The woolen of")).reason == "truncated"
    assert truncation_finding(conversation("<image>\nDescribe it.", "A cat sits on a mat.")) is None
    assert truncation_finding(conversation("<image>\nWhat does it say?", 'It says "OPEN"')) is None


def test_truncation_flags_and_repetition_rejects_by_default():
    checker = ConversationChecker(CheckConfig())
    evidence = checker.evidence(Annotations())
    cut = checker.verdict(conversation("<image>\nIs there anything here?", "Nothing that I can name and the"),
                          evidence)
    assert cut.rejected is None and cut.flags == ["truncated"]
    loop = checker.verdict(conversation("<image>\nWhat is it?", "No idea. No idea. No idea."), evidence)
    assert loop.rejected.reason == "repetition"
