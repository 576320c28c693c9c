"""Typed launch forms: form fields generated from a task's signature and type hints.

Each parameter becomes a field named ``arg_<name>``: int, float, str, bool,
date, datetime, Enum and Literal (a select), list and dict (JSON), Optional of
any of these; parameters without a usable hint get a JSON field. Cleaned values
are JSON-safe (dates as ISO strings, enums as their values), ready to publish.
"""

import collections.abc
import datetime as dt
import enum
import inspect
import json
import types
import typing

from django import forms
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from taskcenter.safe_input import INT_MAX, INT_MIN, JSONInputError, SafeDateTimeField, parse_json

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
    field.help_text = type_text if required else gettext("%(type)s (optional)") % {"type": type_text}
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
        return forms.IntegerField(min_value=INT_MIN, max_value=INT_MAX), "int"
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
        return ValueChoiceField(values), gettext("one of: %(values)s") % {"values": ", ".join(map(str, values))}
    if origin is typing.Literal:
        values = list(typing.get_args(hint))
        return ValueChoiceField(values), gettext("one of: %(values)s") % {"values": ", ".join(map(str, values))}
    if origin in (list, tuple, set, frozenset):
        return JSONValueField(expected=list), gettext("list (JSON)")
    if origin is dict:
        return JSONValueField(expected=dict), gettext("object (JSON)")
    return JSONValueField(), gettext("any JSON value")


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


class IsoDateTimeField(SafeDateTimeField):
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
            parsed = parse_json(text)
        except JSONInputError as exc:
            raise forms.ValidationError(str(exc)) from None
        if self.expected is list and not isinstance(parsed, list):
            raise forms.ValidationError(gettext("Must be a JSON list, e.g. [1, 2]."))
        if self.expected is dict and not isinstance(parsed, dict):
            raise forms.ValidationError(gettext('Must be a JSON object, e.g. {"key": "value"}.'))
        return parsed

    def validate(self, value):
        if value is None and self.required:
            raise forms.ValidationError(self.error_messages["required"], code="required")

    def prepare_value(self, value):
        return json.dumps(value) if isinstance(value, list | dict) else value


# --- Checking values against type hints -------------------------------------------

_SEQUENCES = (
    list,
    tuple,
    set,
    frozenset,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Iterable,
    collections.abc.Collection,
    collections.abc.Set,
)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def check_arguments(
    signature: inspect.Signature,
    hints: dict,
    args: list,
    kwargs: dict,
    *,
    leading: int = 0,
    secret: tuple[str, ...] = (),
    bound: inspect.BoundArguments | None = None,
) -> list[tuple[str, str]]:
    """Arguments whose JSON value does not fit the parameter's type hint: ``(parameter, message)``.

    The arguments must already bind to ``signature`` (``bound``, if the caller has bound
    them already). The first ``leading`` parameters are filled by Celery at run time and
    not checked. Unannotated parameters take any JSON value. Messages never repeat the
    value of a ``secret`` parameter.
    """
    if bound is None:
        bound = signature.bind(*([None] * leading), *args, **kwargs)
    skipped = set(list(signature.parameters)[:leading])
    problems = []
    for name, value in bound.arguments.items():
        if name in skipped:
            continue
        param = signature.parameters[name]
        hint = hints.get(name, param.annotation)
        if param.kind == inspect.Parameter.VAR_POSITIONAL:
            values = [(f"{name}[{i}]", v) for i, v in enumerate(value)]
        elif param.kind == inspect.Parameter.VAR_KEYWORD:
            values = [(key, v) for key, v in value.items()]
        else:
            values = [(name, value)]
        for label, item in values:
            if item is None and param.default is None:
                continue  # ``x: int = None`` takes None
            message = type_error(hint, item)
            if not message:
                continue
            if name in secret:  # say what is expected, never what was given
                message = type_text(hints.get(name, param.annotation))
            elif not isinstance(message, NamesTheItem):  # a list or object's message names the wrong item
                message = gettext("%(expected)s, got %(given)s") % {"expected": message, "given": _describe(item)}
            problems.append(
                (label, gettext("Argument %(name)s must be %(expected)s.") % {"name": repr(label), "expected": message})
            )
    return problems


def type_error(hint, value) -> str | None:
    """What ``value`` (decoded JSON) should be to fit ``hint``, or None when it fits."""
    if hint in (_MISSING, typing.Any, object) or isinstance(hint, str | typing.TypeVar):
        return None
    if hint is None or hint is type(None):
        return None if value is None else "null"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(hint)
        if any(type_error(member, value) is None for member in members):
            return None
        return _either(type_text(member) for member in members)
    if origin is typing.Annotated:
        return type_error(typing.get_args(hint)[0], value)
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if any(type(value) is type(choice) and value == choice for choice in choices):
            return None
        return type_text(hint)
    if hint is bool:
        return None if isinstance(value, bool) else type_text(bool)
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else type_text(int)
    if hint is float:
        return None if isinstance(value, int | float) and not isinstance(value, bool) else type_text(float)
    if hint is str:
        return None if isinstance(value, str) else type_text(str)
    if hint is dt.datetime:
        return None if isinstance(value, str) and _parses(dt.datetime.fromisoformat, value) else type_text(hint)
    if hint is dt.date:
        return None if isinstance(value, str) and _parses(dt.date.fromisoformat, value) else type_text(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        values = [member.value for member in hint]
        return None if any(type(value) is type(v) and value == v for v in values) else type_text(hint)
    container = origin or hint
    if container in _SEQUENCES:
        if not isinstance(value, list):
            return type_text(hint)
        return _items_error(hint, container, value)
    if container in _MAPPINGS:
        if not isinstance(value, dict):
            return type_text(hint)
        members = typing.get_args(hint)
        if len(members) == 2:
            for key, item in value.items():
                if problem := type_error(members[1], item):
                    return NamesTheItem(
                        gettext("%(expected)s; at key %(key)s: %(problem)s, got %(given)s")
                        % {"expected": type_text(hint), "key": repr(key), "problem": problem, "given": _describe(item)}
                    )
        return None
    return None  # a class JSON cannot express: the task decodes it itself


def _items_error(hint, container, value: list) -> str | None:
    members = typing.get_args(hint)
    if not members:
        return None
    if container is tuple and not (len(members) == 2 and members[1] is Ellipsis):
        if len(value) != len(members):
            return gettext("%(expected)s (a list of %(count)s items)") % {
                "expected": type_text(hint),
                "count": len(members),
            }
        pairs = list(zip(members, value, strict=True))
    else:
        pairs = [(members[0], item) for item in value]
    for index, (member, item) in enumerate(pairs):
        problem = type_error(member, item)
        if problem:
            return NamesTheItem(
                gettext("%(expected)s; item %(index)s must be %(problem)s, got %(given)s")
                % {"expected": type_text(hint), "index": index, "problem": problem, "given": _describe(item)}
            )
    return None


def type_text(hint) -> str:
    """A type hint in words, as JSON sees it."""
    origin = typing.get_origin(hint)
    if hint is None or hint is type(None):
        return "null"
    if origin is typing.Literal or (isinstance(hint, type) and issubclass(hint, enum.Enum)):
        values = typing.get_args(hint) if origin is typing.Literal else [m.value for m in hint]
        return gettext("one of %(values)s") % {"values": ", ".join(json.dumps(v) for v in values)}
    simple = {
        bool: gettext_lazy("true or false"),
        int: gettext_lazy("a whole number (int)"),
        float: gettext_lazy("a number (float)"),
        str: gettext_lazy("a string (str)"),
        dt.datetime: gettext_lazy("an ISO 8601 date and time string"),
        dt.date: gettext_lazy("an ISO 8601 date string (YYYY-MM-DD)"),
    }
    if hint in simple:
        return str(simple[hint])
    container = origin or hint
    members = typing.get_args(hint)
    if container in _SEQUENCES:
        if members and (len(members) == 1 or (len(members) == 2 and members[1] is Ellipsis)):
            return gettext("a JSON list (items: %(items)s)") % {"items": type_text(members[0])}
        return gettext("a JSON list")
    if container in _MAPPINGS:
        if len(members) == 2:
            return gettext("a JSON object (values: %(values)s)") % {"values": type_text(members[1])}
        return gettext("a JSON object")
    return getattr(hint, "__name__", str(hint))


class NamesTheItem(str):
    """A type error that already names the wrong item of a list or object (no "got ..." is added)."""


def _either(texts) -> str:
    """ "A or B or C", in the active language."""
    texts = list(texts)
    said = texts[0]
    for text in texts[1:]:
        said = gettext("%(first)s or %(second)s") % {"first": said, "second": text}
    return said


def _parses(parse, value: str) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True


def _describe(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def arguments_schema(signature: inspect.Signature, hints: dict) -> dict:
    """A JSON Schema of a task's arguments: ``args`` (a list) and ``kwargs`` (an object by parameter).

    Each parameter's schema comes from its type hint (``{}``, anything, when it has
    none JSON can express); required parameters are those without a default.
    """
    positional, properties, required = [], {}, []
    extra_args, extra_kwargs = False, False
    for name, param in signature.parameters.items():
        hint = hints.get(name, param.annotation)
        if param.kind == inspect.Parameter.VAR_POSITIONAL:
            extra_args = json_schema_of(hint)
            continue
        if param.kind == inspect.Parameter.VAR_KEYWORD:
            extra_kwargs = json_schema_of(hint)
            continue
        schema = json_schema_of(hint)
        if param.default is not _MISSING:
            default = param.default.value if isinstance(param.default, enum.Enum) else param.default
            schema = {**schema, "default": default} if _json_safe(default) else schema
            if param.default is None and schema:
                schema = {"anyOf": [schema, {"type": "null"}], "default": None}
        else:
            required.append(name)
        if param.kind != inspect.Parameter.KEYWORD_ONLY:
            positional.append({"title": name, **schema})
        properties[name] = schema
    kwargs_schema = {"type": "object", "properties": properties, "additionalProperties": extra_kwargs}
    if required:
        kwargs_schema["required"] = required
    args_schema = {"type": "array", "prefixItems": positional, "items": extra_args}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"args": args_schema, "kwargs": kwargs_schema},
    }


def json_schema_of(hint) -> dict:
    """The JSON Schema of values fitting ``hint`` (as ``type_error`` checks them)."""
    if hint in (_MISSING, typing.Any, object) or isinstance(hint, str | typing.TypeVar):
        return {}
    if hint is None or hint is type(None):
        return {"type": "null"}
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [json_schema_of(member) for member in typing.get_args(hint)]}
    if origin is typing.Annotated:
        return json_schema_of(typing.get_args(hint)[0])
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(hint))}
    simple = {
        bool: {"type": "boolean"},
        int: {"type": "integer"},
        float: {"type": "number"},
        str: {"type": "string"},
        dt.datetime: {"type": "string", "format": "date-time"},
        dt.date: {"type": "string", "format": "date"},
    }
    if hint in simple:
        return dict(simple[hint])
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [member.value for member in hint]}
    container = origin or hint
    members = typing.get_args(hint)
    if container in _SEQUENCES:
        if container is tuple and members and not (len(members) == 2 and members[1] is Ellipsis):
            return {
                "type": "array",
                "prefixItems": [json_schema_of(m) for m in members],
                "items": False,
                "minItems": len(members),
            }
        return {"type": "array", "items": json_schema_of(members[0])} if members else {"type": "array"}
    if container in _MAPPINGS:
        schema = {"type": "object"}
        if len(members) == 2:
            schema["additionalProperties"] = json_schema_of(members[1])
        return schema
    return {}
