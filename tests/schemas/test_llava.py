import pytest

from llavaforge.schemas.llava import llava_record_errors, llava_records, turn_errors
from llavaforge.schemas.record import Conversation, Turn
from tests.conftest import make_record


def turns(*pairs):
    return [Turn(role=r, value=v) for r, v in pairs]


def test_valid_conversation_has_no_errors():
    assert turn_errors(turns(("human", "<image>\nWhat is it?"), ("gpt", "A cat."),
                             ("human", "Color?"), ("gpt", "Grey."))) == []


@pytest.mark.parametrize("bad, expected", [
    (turns(("human", "What is it?"), ("gpt", "A cat.")), "appears 0 times"),
    (turns(("human", "<image>\nWhat <image>?"), ("gpt", "A cat.")), "appears 2 times"),
    (turns(("human", "What is it?\n<image>"), ("gpt", "A cat.")), "not at the start"),
    (turns(("human", "<image>\nQ"), ("human", "Q2"), ("gpt", "A")), "expected 'gpt'"),
    (turns(("human", "<image>\nQ"),), "last turn is not from gpt"),
    (turns(("human", "<image>\nQ"), ("gpt", "  ")), "empty value"),
    (turns(("gpt", "<image>\nA"), ("human", "Q")), "expected 'human'"),
    ([], "no turns"),
])
def test_invalid_turns_are_named(bad, expected):
    errors = turn_errors(bad)
    assert any(expected in e for e in errors), errors


def test_llava_record_errors_on_decoded_json():
    good = {"id": "k_detail", "image": "k.jpg", "conversations": [
        {"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": "A cat."}]}
    assert llava_record_errors(good) == []
    assert "no turns" in llava_record_errors({**good, "conversations": []})  # LLaVA's training code crashes on it
    assert llava_record_errors({**good, "flags": ["truncated"]}) == []
    assert "missing image" in llava_record_errors({**good, "image": ""})
    assert llava_record_errors({**good, "conversations": [{"from": "human"}]})
    assert llava_record_errors([good]) == ["record is not an object"]


def test_llava_records_one_per_conversation_and_none_without():
    record = make_record(key="ab" * 16)
    assert llava_records(record) == []  # a curation-only image has no LLaVA record
    record.conversations = [Conversation(task="detail", turns=turns(("human", "<image>\nD"), ("gpt", "A")))]
    (entry,) = llava_records(record)
    assert entry["id"] == f"{'ab' * 16}_detail"
    assert entry["conversations"][0] == {"from": "human", "value": "<image>\nD"}
