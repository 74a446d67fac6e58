from llavaforge.quality.checker import ConversationChecker
from llavaforge.quality.repetition import repetition_finding, truncation_finding
from llavaforge.schemas.record import Annotations, Conversation, Turn
from llavaforge.config.check import CheckConfig


def conversation(*values, task="conversation"):
    return Conversation(task=task, turns=[Turn("human" if i % 2 == 0 else "gpt", v) for i, v in enumerate(values)])


def test_sentence_loop_is_repetition():
    c = conversation("<image>\nWhat is this rocket doing?",
                     "It's a drill. It's a drill. It's a drill. It's a drill.")
    finding = repetition_finding(c, max_sentence_repeats=2)
    assert finding.reason == "repetition" and "4 times" in finding.detail


def test_same_question_twice_is_repetition():
    c = conversation("<image>\nWhat is the wool?", "Wool from a sheep.", "What is the wool?", "Still wool.")
    assert "asked 2 times" in repetition_finding(c, 2).detail


def test_varied_answers_are_not_repetition():
    c = conversation("<image>\nWhat is on the table?", "A cup of coffee. A spoon lies beside it.",
                     "What color is the cup?", "The cup is white.")
    assert repetition_finding(c, 2) is None


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
