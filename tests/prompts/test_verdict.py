"""Reading the verifier's reply: one verdict per numbered answer, never an exception."""

from __future__ import annotations

from hypothesis import given, strategies as st

from llavaforge.prompts.verdict import CONTRADICTED, SUPPORTED, UNSURE, Verdict, parse_verdicts


def test_the_requested_format():
    reply = "1. SUPPORTED\n2. CONTRADICTED: the photo shows a tripod, not a helicopter.\n3. UNSURE: too dark"
    assert parse_verdicts(reply, 3) == {
        1: Verdict(SUPPORTED, ""), 2: Verdict(CONTRADICTED, "the photo shows a tripod, not a helicopter."),
        3: Verdict(UNSURE, "too dark")}


def test_common_variants_and_synonyms():
    reply = ("Here are my verdicts:\n**1.** **Supported**\n2) false - there is no dog\n"
             "Answer 3: contradicted, wrong count\n- 4: uncertain")
    verdicts = parse_verdicts(reply, 4)
    assert [verdicts[n].label for n in (1, 2, 3, 4)] == [SUPPORTED, CONTRADICTED, CONTRADICTED, UNSURE]
    assert verdicts[2].reason == "there is no dog" and verdicts[3].reason == "wrong count"


def test_missing_out_of_range_and_repeated_numbers():
    verdicts = parse_verdicts("2. SUPPORTED\n2. CONTRADICTED: later\n7. CONTRADICTED\nsupported", 3)
    assert verdicts == {2: Verdict(SUPPORTED, "")}  # 1 and 3 have no verdict


def test_words_that_only_start_like_a_label_are_not_verdicts():
    assert parse_verdicts("1. Nothing to see\n2. Trueness", 2) == {}


@given(st.one_of(st.text(), st.none(), st.integers()), st.integers(min_value=0, max_value=20))
def test_never_raises(text, count):
    verdicts = parse_verdicts(text, count)
    assert all(1 <= n <= count for n in verdicts)
