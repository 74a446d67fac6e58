"""llava.json is checked one record at a time, with the same verdicts as parsing it whole."""

from __future__ import annotations

import io
import json

import pytest

from llavaforge.jobs.verify import json_list_items

LISTS = [
    [],
    [{}],
    [{"id": "a", "conversations": [{"from": "human", "value": "<image>\\nWhat is [this], \"really\"?"}]}],
    [1, 2.5, -3e4, "x", None, True, [], {"a": [1, {"b": "]"}]}],
    [{"id": str(i), "value": "é" * i} for i in range(60)],
]


@pytest.mark.parametrize("items", LISTS)
@pytest.mark.parametrize("chunk_chars", [1, 3, 7, 1 << 20])
@pytest.mark.parametrize("indent", [None, 1])
def test_items_are_those_of_the_whole_list(items, chunk_chars, indent):
    text = json.dumps(items, ensure_ascii=False, indent=indent)
    assert list(json_list_items(io.StringIO(text), chunk_chars)) == items


def test_a_number_cut_at_a_chunk_boundary_is_read_whole():
    assert list(json_list_items(io.StringIO("[12345, 678]"), chunk_chars=3)) == [12345, 678]


@pytest.mark.parametrize("text", ["", "{}", "[1, 2", "[1 2]", "[1,]", "[{\"a\": 1}", "[1] [2]", "[1] x"])
def test_anything_but_one_json_list_is_a_value_error(text):
    with pytest.raises(ValueError):
        list(json_list_items(io.StringIO(text), chunk_chars=2))
