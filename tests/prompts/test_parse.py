import json

from hypothesis import given, settings
from hypothesis import strategies as st

from llavaforge.prompts.parse import normalise_text, parse_output
from llavaforge.schemas.llava import GPT, HUMAN, IMAGE_TOKEN, turn_errors
from llavaforge.schemas.record import Turn

# Values of labelled formats cannot hold a line that looks like a label or separator, so
# they are drawn without colons and '='; JSON values may be any text.
_WORD = st.text(alphabet=st.characters(whitelist_categories=("L", "N"), whitelist_characters=".,?!'()"),
                min_size=1, max_size=12)
_LINE = st.lists(_WORD, min_size=1, max_size=6).map(" ".join)
LABELLED_VALUE = st.lists(_LINE, min_size=1, max_size=3).map("\n".join)
ANY_VALUE = st.text(min_size=1, max_size=80).map(lambda s: s.replace(IMAGE_TOKEN, "")).map(str.strip).filter(bool)


def pairs(values):
    return st.lists(st.tuples(values, values), min_size=1, max_size=4)


def as_turns(qa):
    return [Turn(role, v) for q, a in qa for role, v in ((HUMAN, q), (GPT, a))]


def expected(qa):
    turns = [Turn(t.role, normalise_text(t.value)) for t in as_turns(qa)]
    return [Turn(HUMAN, f"{IMAGE_TOKEN}\n{turns[0].value}")] + turns[1:]


def render_question_answer(qa):
    return "\n===\n".join(f"Question: {q}\nAnswer: {a}" for q, a in qa)


def render_bold_numbered(qa):
    return "Here is the chat.\n\n" + "\n\n".join(
        f"**Q{i}:** {q}\n**A{i}:** {a}" for i, (q, a) in enumerate(qa, 1))


def render_roles_in_fence(qa):
    body = "\n".join(f"User: {q}\nAssistant: {a}" for q, a in qa)
    return f"```text\n{body}\n```"


def render_json_from_value(qa):
    return json.dumps([{"from": t.role, "value": t.value} for t in as_turns(qa)])


def render_json_role_content_fenced(qa):
    roles = {HUMAN: "user", GPT: "assistant"}
    data = [{"role": roles[t.role], "content": t.value} for t in as_turns(qa)]
    return f"Sure!\n```json\n{json.dumps(data, indent=2)}\n```\n"


def render_json_question_answer(qa):
    return json.dumps({"conversations": [{"question": q, "answer": a} for q, a in qa]})


LABELLED = [render_question_answer, render_bold_numbered, render_roles_in_fence]
JSON = [render_json_from_value, render_json_role_content_fenced, render_json_question_answer]


@settings(max_examples=60, deadline=None)
@given(qa=pairs(LABELLED_VALUE), render=st.sampled_from(LABELLED))
def test_labelled_formats_round_trip(qa, render):
    parsed = parse_output(render(qa), "turns")
    assert parsed.error == ""
    assert parsed.turns == expected(qa)


@settings(max_examples=60, deadline=None)
@given(qa=pairs(ANY_VALUE), render=st.sampled_from(JSON))
def test_json_formats_round_trip(qa, render):
    parsed = parse_output(render(qa), "turns")
    assert parsed.error == ""
    assert parsed.turns == expected(qa)


@settings(max_examples=40, deadline=None)
@given(qa=pairs(LABELLED_VALUE), render=st.sampled_from(LABELLED + JSON))
def test_pair_format_keeps_the_first_pair(qa, render):
    parsed = parse_output(render(qa), "pair")
    assert parsed.turns == expected(qa[:1])


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(), st.text(alphabet="QAqa:=*`[]{}\"\n <>image,"), st.binary().map(repr)),
       fmt=st.sampled_from(["turns", "pair", "answer"]))
def test_arbitrary_text_gives_valid_turns_or_a_reason(text, fmt):
    parsed = parse_output(text, fmt, "Describe the image.")
    if parsed.turns:
        assert parsed.error == ""
        assert turn_errors(parsed.turns) == []
    else:
        assert parsed.error


def test_image_token_in_model_text_is_removed_and_placed_once():
    parsed = parse_output("Question: <image> What is here?\nAnswer: A dog <image>.", "turns")
    assert [t.value for t in parsed.turns] == [f"{IMAGE_TOKEN}\nWhat is here?", "A dog ."]


def test_dangling_question_at_the_end_is_dropped():
    parsed = parse_output("Question: one?\nAnswer: yes\n===\nQuestion: two?", "turns")
    assert len(parsed.turns) == 2


def test_answer_format_uses_the_instruction_and_the_whole_text():
    parsed = parse_output("```\nA gray cat sleeps on a sofa.\n```", "answer", "Describe this image.")
    assert parsed.turns == [Turn(HUMAN, f"{IMAGE_TOKEN}\nDescribe this image."),
                            Turn(GPT, "A gray cat sleeps on a sofa.")]


def test_answer_format_takes_a_labelled_answer():
    parsed = parse_output("Question: describe\nAnswer: A red car.", "answer", "Describe it.")
    assert parsed.turns[1].value == "A red car."


def test_empty_and_unlabelled_outputs_are_errors():
    assert parse_output("", "turns").error == "empty output"
    assert parse_output("   \n", "answer", "Describe.").error == "empty output"
    assert parse_output("just some words", "turns").error
    assert parse_output("Answer: first without a question", "turns").error
    assert parse_output(None, "turns").error


def test_line_breaks_inside_sentences_are_joined_and_structure_is_kept():
    text = "Question: What is it?\nAnswer: It is a very\nimportant   cat.\n\nIt has:\n- a tail\n- two\n  ears"
    (question, answer) = parse_output(text, "turns").turns
    assert answer.value == "It is a very important cat.\n\nIt has:\n- a tail\n- two ears"
    assert normalise_text("one\r\ntwo\u00a0 three") == "one two three"
