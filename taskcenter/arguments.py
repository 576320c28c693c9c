"""Typed launch forms: form fields generated from a task's signature and type hints.

Each parameter becomes a field named ``arg_<name>``: int, float, str, bool,
date, datetime, Enum and Literal (a select), list and dict (JSON), Optional of
any of these; parameters without a usable hint get a JSON field. Cleaned values
are JSON-safe (dates as ISO strings, enums as their values), ready to publish.
"""

import datetime as dt
import enum
import inspect
import json
import types
import typing

from django import forms
from django.utils import timezone

PREFIX = "arg_"
_MISSING = inspect.Parameter.empty
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def type_hints(func) -> dict:
    """The function's type hints, resolved when possible (string annotations included)."""
    try:
        return typing.get_type_hints(func)
    except Exception:  # unresolvable forward references: fall back to the raw annotations
        return {name: p.annotation for name, p in inspect.signature(func).parameters.items()}


def has_typed_form(signature: inspect.Signature) -> bool:
    """True unless the task takes ``*args`` or ``**kwargs`` (those need the raw JSON form)."""
    return not any(p.kind in _VARIADIC for p in signature.parameters.values())


def argument_fields(signature: inspect.Signature, hints: dict) -> dict[str, forms.Field]:
    """One form field per parameter, in signature order, named ``arg_<parameter>``."""
    return {
        PREFIX + name: _field_for(param, hints.get(name, param.annotation))
        for name, param in signature.parameters.items()
        if param.kind not in _VARIADIC
    }


def arguments_from_cleaned(signature: inspect.Signature, cleaned: dict) -> tuple[list, dict]:
    """Positional and keyword arguments for the task from a form's cleaned data.

    An empty optional field is left out when the parameter has a default (so the
    default applies) and passed as None otherwise.
    """
    args, kwargs = [], {}
    for name, param in signature.parameters.items():
        if param.kind in _VARIADIC:
            continue
        value = cleaned.get(PREFIX + name)
        if value is None and param.default is not _MISSING:
            continue
        if param.kind == inspect.Parameter.POSITIONAL_ONLY:
            args.append(value)
        else:
            kwargs[name] = value
    return args, kwargs


def field_initial_from_arguments(signature: inspect.Signature, hints: dict, args: list, kwargs: dict) -> dict:
    """Initial field values from earlier arguments, e.g. to re-run with edited arguments."""
    try:
        bound = signature.bind_partial(*args, **kwargs)
    except TypeError:
        return {}
    fields = argument_fields(signature, hints)
    return {
        PREFIX + name: json.dumps(value) if isinstance(fields.get(PREFIX + name), JSONValueField) else _initial(value)
        for name, value in bound.arguments.items()
    }


def _initial(value):
    if isinstance(value, list | dict):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


# --- Fields per type -------------------------------------------------------------------


def _field_for(param: inspect.Parameter, hint) -> forms.Field:
    hint, optional = _unwrap_optional(hint)
    required = param.default is _MISSING and not optional
    field, type_text = _typed_field(hint, required)
    field.label = param.name
    field.required = required
    field.help_text = type_text + ("" if required else " (optional)")
    if param.default is not _MISSING and param.default is not None and _json_safe(param.default):
        field.initial = _initial(param.default.value if isinstance(param.default, enum.Enum) else param.default)
    return field


def _unwrap_optional(hint):
    """(X, True) for Optional[X] / X | None; (hint, False) otherwise."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(members) < len(typing.get_args(hint)):
            return (members[0] if len(members) == 1 else typing.Any), True
    return hint, False


def _typed_field(hint, required: bool) -> tuple[forms.Field, str]:
    origin = typing.get_origin(hint) or hint
    if hint is bool:
        return BooleanChoiceField(), "bool"
    if hint is int:
        return forms.IntegerField(), "int"
    if hint is float:
        return forms.FloatField(), "float"  # refuses NaN and infinity
    if hint is str:
        return forms.CharField(strip=False, empty_value=None if not required else ""), "str"
    if hint is dt.datetime:
        return IsoDateTimeField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"})), "datetime"
    if hint is dt.date:
        return IsoDateField(widget=forms.DateInput(attrs={"type": "date"})), "date"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        values = [member.value for member in hint]
        return ValueChoiceField(values), "one of: " + ", ".join(map(str, values))
    if origin is typing.Literal:
        values = list(typing.get_args(hint))
        return ValueChoiceField(values), "one of: " + ", ".join(map(str, values))
    if origin in (list, tuple, set, frozenset):
        return JSONValueField(expected=list), "list (JSON)"
    if origin is dict:
        return JSONValueField(expected=dict), "object (JSON)"
    return JSONValueField(), "any JSON value"


def _json_safe(value) -> bool:
    try:
        json.dumps(value.value if isinstance(value, enum.Enum) else value)
    except (TypeError, ValueError):
        return False
    return True


class BooleanChoiceField(forms.TypedChoiceField):
    """true/false as a select: unlike a checkbox it can be required and tell "unset" apart."""

    def __init__(self, **kwargs):
        super().__init__(
            choices=[("", "---------"), ("true", "true"), ("false", "false")],
            coerce=lambda value: value == "true",
            empty_value=None,
            **kwargs,
        )


class IsoDateTimeField(forms.DateTimeField):
    """A date and time in the site's time zone, passed on as an ISO 8601 string."""

    def clean(self, value):
        value = super().clean(value)
        return timezone.localtime(value).isoformat() if value else None


class IsoDateField(forms.DateField):
    def clean(self, value):
        value = super().clean(value)
        return value.isoformat() if value else None


class ValueChoiceField(forms.ChoiceField):
    """A select over fixed values (Enum values, Literal members) that cleans to the value itself."""

    def __init__(self, values: list, **kwargs):
        self.values = {str(value): value for value in values}
        super().__init__(choices=[("", "---------"), *[(str(v), str(v)) for v in values]], **kwargs)

    def clean(self, value):
        value = super().clean(value)
        return self.values.get(value) if value not in (None, "") else None


class JSONValueField(forms.CharField):
    """Any JSON value, or one of an expected type (list or object)."""

    def __init__(self, *, expected: type | None = None, **kwargs):
        self.expected = expected
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 2, "class": "mono", "spellcheck": "false"}))
        super().__init__(**kwargs)

    def to_python(self, value):
        text = (value or "").strip()
        if not text:
            return None
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None
        if self.expected is list and not isinstance(parsed, list):
            raise forms.ValidationError("Must be a JSON list, e.g. [1, 2].")
        if self.expected is dict and not isinstance(parsed, dict):
            raise forms.ValidationError('Must be a JSON object, e.g. {"key": "value"}.')
        return parsed

    def validate(self, value):
        if value is None and self.required:
            raise forms.ValidationError(self.error_messages["required"], code="required")

    def prepare_value(self, value):
        return json.dumps(value) if isinstance(value, list | dict) else value
