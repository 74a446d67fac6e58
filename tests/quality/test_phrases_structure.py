import re

from llavaforge.quality.finding import LEAKAGE, REFUSAL
from llavaforge.quality.phrases import phrase_finding, phrase_pattern
from llavaforge.quality.structure import structure_errors
from llavaforge.schemas.record import Conversation, Turn
from llavaforge.config.check import CheckConfig

CONFIG = CheckConfig()
LEAK = phrase_pattern(CONFIG.leakage.phrases, CONFIG.leakage.patterns)
REFUSE = phrase_pattern(CONFIG.refusal.phrases, CONFIG.refusal.patterns)
TEMPLATES = [re.compile(p) for p in CONFIG.structure.template_patterns]


def leak(answer):
    return phrase_finding(LEAKAGE, [answer], LEAK)


def test_leakage_phrases_and_coordinates_are_found():
    assert leak("According to the caption, a dog sits.").reason == LEAKAGE
    assert "bounding box" in leak("The bounding box of the dog is large.").detail
    assert leak("The man stands at [0.12, 0.40, 0.35, 0.98].") is not None
    assert leak("The text says a girl flies a kite.") is not None


def test_leakage_ignores_similar_innocent_words():
    assert leak("A captivating sunset over the sea.") is None
    assert leak("Red text on the window reads SALE.") is None
    assert leak("The dog is 0.5 meters tall.") is None


def test_refusals_are_found_and_normal_answers_are_not():
    assert phrase_finding(REFUSAL, ["As an AI, I cannot see images."], REFUSE).reason == REFUSAL
    assert phrase_finding(REFUSAL, ["I'm sorry, but I can't see the image."], REFUSE) is not None
    assert phrase_finding(REFUSAL, ["It is hard to tell what breed the dog is."], REFUSE) is None


def test_boundaries_outside_the_alternation_match_like_boundaries_around_each_phrase():
    phrases = CONFIG.refusal.phrases + CONFIG.leakage.phrases + ["the caption", "caption", "(see note)", "a.b"]
    around_each = re.compile("|".join(rf"(?<!\w){re.escape(p)}(?!\w)" for p in phrases), re.IGNORECASE)
    texts = ["As an AI language model, I read the caption.", "Captivating: the captions (see note) say a.b.",
             "xas an ai", "a.bc and a-b and A.B", "the caption.the caption", "I cannot see; I can't view it.",
             "According to the bounding boxes, the bounding box shows it."]
    for text in texts:
        assert [(m.start(), m.group(0)) for m in phrase_pattern(phrases).finditer(text)] == \
            [(m.start(), m.group(0)) for m in around_each.finditer(text)]


def test_empty_phrase_list_matches_nothing():
    assert phrase_pattern([], []) is None
    assert phrase_finding(REFUSAL, ["As an AI"], None) is None


def errors(task, *values):
    roles = ["human", "gpt"] * len(values)
    return structure_errors(Conversation(task, [Turn(r, v) for r, v in zip(roles, values)]),
                            CONFIG.structure, TEMPLATES)


def test_valid_conversation_has_no_structure_errors():
    assert errors("conversation", "<image>\nWhat is it?", "A dog.", "Where?", "On a couch.") == []


def test_llava_validity_errors():
    assert any("<image>" in e for e in errors("conversation", "What is it?", "A dog."))
    assert any("empty" in e for e in errors("conversation", "<image>\nWhat is it?", "  "))


def test_turns_per_task_and_lengths():
    assert any("pairs" in e for e in errors("detail", "<image>\nDescribe.", "x" * 100, "More?", "x" * 100))
    assert any("fewer than 50" in e for e in errors("detail", "<image>\nDescribe it.", "A horse."))
    assert errors("custom_task", "<image>\nQ?", "A.", "Q?", "A.") == []


def test_template_leftovers_and_role_labels():
    assert any("{object}" in e for e in errors("conversation", "<image>\nWhat?", "A {object} here."))
    assert any("<|im_end|>" in e for e in errors("conversation", "<image>\nWhat?", "A dog.<|im_end|>"))
    assert any("Human:" in e for e in errors("conversation", "<image>\nWhat?", "A dog.\nHuman: more?"))
    assert errors("conversation", "<image>\nWhat?", "A dog (brown) at 3:15 pm.") == []
