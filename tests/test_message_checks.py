"""The worker's message checks as pure logic, on kombu messages built in memory."""

import json

import pytest
from kombu import Message

from taskcenter.worker import message_problem, nesting_depth_exceeds

ACCEPT = {"application/json"}


def message(body, *, headers=None, content_type="application/json"):
    if headers is None:
        headers = {"task": "examples.add", "id": "t-1"}
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    return Message(body=raw, headers=headers, content_type=content_type, content_encoding="utf-8", accept=ACCEPT)


def test_a_well_formed_message_passes(settings):
    assert message_problem(message([[1, 2], {}, {"callbacks": None}])) is None
    assert message_problem(message({"task": "examples.add", "id": "t", "args": [1], "kwargs": {}}, headers={})) is None


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        ([[1], {}], None, "body is not a list of [args, kwargs, embed]"),
        ([{"a": 1}, {}, {}], None, "arguments (args) are not a list"),
        ([[1], [2], {}], None, "keyword arguments (kwargs) are not an object"),
        ([[1], {}, 3], None, "embed"),
        ([[1], {}, {}], {"task": "examples.add"}, "header 'id' is missing or not a string"),
        ([[1], {}, {}], {"task": "examples.add", "id": ""}, "header 'id' is missing or not a string"),
        ([[1], {}, {}], {"task": "examples.add", "id": "x" * 256}, "task id longer than 255 characters"),
        ([[1], {}, {}], {}, "message names no task"),
        ({"task": "x"}, {}, "message has no usable task id"),
        ({"task": "x", "id": "y", "kwargs": []}, {}, "keyword arguments (kwargs) are not an object"),
        ("[[1], {}, {", None, "body could not be decoded"),
    ],
)
def test_malformed_messages_are_refused_with_the_reason(body, headers, reason):
    assert reason in message_problem(message(body, headers=headers))


def test_size_depth_and_content_type_limits(settings):
    settings.TASKCENTER_MESSAGE_MAX_BYTES = 2048
    settings.TASKCENTER_MESSAGE_MAX_DEPTH = 10
    assert "larger than the limit of 2048 bytes" in message_problem(message([["x" * 3000], {}, {}]))
    deep = {"a": 1}
    for _ in range(12):
        deep = {"a": deep}
    assert message_problem(message([[], {"x": deep}, {}])) == "arguments nested deeper than 10 levels"
    headers = {"task": "examples.add", "id": "t", "extra": deep}
    assert message_problem(message([[], {}, {}], headers=headers)) == "headers nested deeper than 10 levels"
    pickled = message(b"\x80\x04N.", content_type="application/x-python-serialize")
    assert "content type 'application/x-python-serialize' is not accepted" in message_problem(pickled)


@pytest.mark.parametrize(
    ("value", "limit", "exceeds"),
    [
        (1, 1, False),
        ([], 1, False),
        ([[]], 1, True),
        ([[]], 2, False),
        ({"a": [{"b": 1}]}, 3, False),
        ({"a": [{"b": {}}]}, 3, True),
    ],
)
def test_nesting_depth_is_measured_against_a_limit(value, limit, exceeds):
    assert nesting_depth_exceeds(value, limit) is exceeds


def test_nesting_depth_is_measured_without_recursion():
    value = []
    for _ in range(5000):  # deeper than Python's recursion limit
        value = [value]
    assert nesting_depth_exceeds(value, 100) is True
    assert nesting_depth_exceeds(value, 6000) is False
