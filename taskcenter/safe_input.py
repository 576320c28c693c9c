"""Bounded input: JSON and dates from operators that cannot crash a process.

``json.loads`` raises ``RecursionError`` on deep nesting and ``ValueError`` on
integers of more than 4300 digits; a value nested a few hundred levels deep
parses, then crashes the worker that pickles it for its pool. Every JSON the
pages, commands and services accept is parsed by ``parse_json`` or checked by
``check_json``, so such input is refused with a message instead.
"""

import datetime as dt
import json
import math

from django import forms
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

#: Deepest nesting of lists and objects accepted in arguments.
MAX_DEPTH = 32
#: Longest integer accepted (in digits); 64-bit integers have at most 19.
MAX_INT_DIGITS = 30
#: Integers must fit the signed 64 bits every database and worker language can hold.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
#: PostgreSQL's jsonb cannot hold the NUL character (\u0000); refused on every engine alike.
NUL = "\x00"
NUL_MESSAGE = gettext_lazy("Strings cannot contain the NUL character (\\u0000).")


class JSONInputError(ValueError):
    """Refused JSON; ``str(error)`` is a message for the operator."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JSONInputError(
            gettext("An integer has more than %(digits)s digits; integers must fit in 64 bits.")
            % {"digits": MAX_INT_DIGITS}
        )
    return int(text)


def _parse_constant(name: str):
    raise JSONInputError(gettext("%(name)s is not a JSON number.") % {"name": name})


def parse_json(text: str):
    """Parse JSON text within the limits; raise ``JSONInputError`` with a message otherwise."""
    try:
        value = json.loads(text, parse_int=_parse_int, parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        raise JSONInputError(
            gettext("Not valid JSON: %(error)s (line %(line)s, column %(column)s).")
            % {"error": exc.msg, "line": exc.lineno, "column": exc.colno}
        ) from None
    except RecursionError:
        raise JSONInputError(
            gettext("JSON is nested too deeply (more than %(depth)s levels).") % {"depth": MAX_DEPTH}
        ) from None
    check_json(value)
    return value


def check_json(value) -> None:
    """Check a value that must be plain JSON within the limits; raise ``JSONInputError``.

    Walks the value without recursion, so a value nested thousands deep is
    refused, not a ``RecursionError``.
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, str):
            if NUL in item:
                raise JSONInputError(NUL_MESSAGE)
            continue
        if isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                raise JSONInputError(gettext("An integer is too large; integers must fit in 64 bits."))
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise JSONInputError(gettext("Numbers must be finite (no NaN or infinity)."))
            continue
        if isinstance(item, list | dict):
            if depth > MAX_DEPTH:
                raise JSONInputError(
                    gettext("JSON is nested too deeply (more than %(depth)s levels).") % {"depth": MAX_DEPTH}
                )
            if isinstance(item, dict):
                if not all(isinstance(key, str) for key in item):
                    raise JSONInputError(gettext("Object keys must be strings."))
                if any(NUL in key for key in item):
                    raise JSONInputError(NUL_MESSAGE)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
            continue
        raise JSONInputError(
            gettext("Arguments must be plain JSON values, not %(type)s.") % {"type": type(item).__name__}
        )


def has_utc_time(value: dt.datetime) -> bool:
    """False for an aware time with no UTC equivalent (year 1 east of UTC, year 9999 west of it)."""
    if timezone.is_naive(value):
        return dt.datetime.min + dt.timedelta(days=2) <= value <= dt.datetime.max - dt.timedelta(days=2)
    try:
        value.astimezone(dt.UTC).astimezone(value.tzinfo)
    except (OverflowError, ValueError):
        return False
    return True


def datetime_in_range(value: dt.datetime | None) -> dt.datetime | None:
    """``value`` if it has a UTC time; raise ``ValidationError`` otherwise.

    The database layer would raise ``OverflowError`` converting it.
    """
    if value is not None and not has_utc_time(value):
        raise forms.ValidationError(gettext("Enter a date between the years 2 and 9998."), code="out_of_range")
    return value


class SafeDateTimeField(forms.DateTimeField):
    """A DateTimeField that refuses dates with no UTC equivalent instead of raising OverflowError."""

    def to_python(self, value):
        try:
            result = super().to_python(value)
        except OverflowError:
            raise forms.ValidationError(
                gettext("Enter a date between the years 2 and 9998."), code="out_of_range"
            ) from None
        return datetime_in_range(result)
