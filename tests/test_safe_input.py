"""Bounded JSON input: any text is either a value within the limits or a JSONInputError."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskcenter.safe_input import MAX_DEPTH, JSONInputError, check_json, parse_json

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='[]{}",:0123456789.eE-+ aNItrufsl\\', max_size=300))
def test_any_text_parses_or_is_refused_with_a_message(text):
    try:
        parse_json(text)
    except JSONInputError as exc:
        assert str(exc)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_values_within_the_limits_round_trip(value):
    try:
        check_json(value)
    except JSONInputError:
        return
    assert parse_json(json.dumps(value)) == value


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 100_000])
def test_deep_nesting_is_refused_by_text_and_by_value(depth):
    with pytest.raises(JSONInputError, match="nested too deeply"):
        parse_json("[" * depth + "]" * depth)
    value: list = []
    for _ in range(depth):
        value = [value]
    with pytest.raises(JSONInputError, match="nested too deeply"):
        check_json(value)


def test_limits_hold_at_their_edges():
    parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    assert parse_json(str(2**63 - 1)) == 2**63 - 1
    for text in (str(2**63), "1" * 31, "1" * 5000, "-" + "1" * 5000):
        with pytest.raises(JSONInputError):
            parse_json(text)
    for value in (float("nan"), float("inf"), {1: "a"}, object(), b"bytes"):
        with pytest.raises(JSONInputError):
            check_json(value)


def test_a_nul_character_in_a_string_or_key_is_refused_by_text_and_by_value():
    """PostgreSQL's jsonb cannot store \\u0000 (a DataError there); refused alike on every engine."""
    for text in ('["a\\u0000"]', '{"k\\u0000": 1}', '{"k": {"n": ["\\u0000"]}}'):
        with pytest.raises(JSONInputError, match="NUL character"):
            parse_json(text)
    for value in (["a\x00"], {"k\x00": 1}, {"k": [{"n": "\x00"}]}):
        with pytest.raises(JSONInputError, match="NUL character"):
            check_json(value)
    assert parse_json('["a\\\\u0000"]') == ["a\\u0000"]  # an escaped backslash is just text
