"""Failure fingerprints: the same error groups together whatever its line numbers, message or ids."""

from taskcenter.failures import exception_type_of, failure_fingerprint, frames_of

TRACEBACK = """Traceback (most recent call last):
  File "/srv/app/.venv/lib/python3.11/site-packages/celery/app/trace.py", line {l1}, in trace_task
    R = retval = fun(*args, **kwargs)
                 ^^^^^^^^^^^^^^^^^^^^
  File "/srv/app/taskcenter/examples/tasks.py", line {l2}, in fail
    _check_input(message)
  File "/srv/app/taskcenter/examples/tasks.py", line {l3}, in _check_input
    raise ExampleFailure(message)
taskcenter.examples.tasks.ExampleFailure: {message}
"""


def tb(l1=453, l2=77, l3=81, message="boom", **replace):
    text = TRACEBACK.format(l1=l1, l2=l2, l3=l3, message=message)
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def fp(traceback, task_name="examples.fail", exception="ExampleFailure('boom')"):
    return failure_fingerprint(task_name=task_name, exception=exception, traceback=traceback)


def test_same_error_from_other_lines_messages_and_ids_has_one_fingerprint():
    first = fp(tb())
    moved = fp(tb(l1=500, l2=90, l3=120, message="order 81 at 0x7f3a2c1b9d90 failed"), exception="ExampleFailure('x')")
    assert first.value == moved.value
    assert len(first.value) == 40
    assert first.exception_type == "taskcenter.examples.tasks.ExampleFailure"
    assert first.location == ("app/trace.py:trace_task > examples/tasks.py:fail > examples/tasks.py:_check_input")


def test_same_code_installed_elsewhere_has_the_same_fingerprint():
    assert fp(tb()).value == fp(tb(**{"/srv/app/": "/home/deploy/releases/42/"})).value


def test_another_exception_type_is_another_group():
    other = tb(**{"tasks.ExampleFailure: boom": "tasks.OtherFailure: boom"})
    assert fp(tb()).value != fp(other).value


def test_another_place_is_another_group():
    other = tb(**{"in _check_input": "in _check_output"})
    assert fp(tb()).value != fp(other).value


def test_another_task_is_another_group():
    assert fp(tb()).value != fp(tb(), task_name="examples.other").value


def test_a_chained_exception_is_fingerprinted_by_the_last_one_raised():
    chained = (
        tb()
        + "\nDuring handling of the above exception, another exception occurred:\n\n"
        + 'Traceback (most recent call last):\n  File "/srv/app/app/db.py", line 3, in save\n    x\nKeyError: 1\n'
    )
    assert exception_type_of("", chained) == "KeyError"
    assert frames_of(chained) == ["app/db.py:save"]


def test_a_multiline_message_does_not_change_the_type():
    text = tb(message="first line\nsecond_line")
    assert exception_type_of("", text) == "taskcenter.examples.tasks.ExampleFailure"


def test_without_a_traceback_the_type_comes_from_the_exception_repr():
    result = fp("", exception="TimeLimitExceeded(60)")
    assert result.exception_type == "TimeLimitExceeded"
    assert result.location == ""
    assert fp("", exception="garbage !!").exception_type == "UnknownError"
