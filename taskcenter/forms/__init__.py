"""Forms: parse and check operator input before it reaches a service."""

import json

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from taskcenter import arguments
from taskcenter.models import RUN_STATES, RunSource
from taskcenter.priorities import Priority
from taskcenter.safe_input import INT_MAX, JSONInputError, SafeDateTimeField, parse_json
from taskcenter.zones import zone_label


class JSONTextField(forms.CharField):
    """A textarea holding JSON of one expected type (list or dict)."""

    def __init__(self, *, expected_type: type, example: str, **kwargs):
        self.expected_type = expected_type
        self.example = example
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3, "class": "mono", "spellcheck": "false"}))
        super().__init__(**kwargs)

    def to_python(self, value):
        if isinstance(value, list | dict):  # already parsed
            return value
        text = (value or "").strip()
        if not text:
            return self.expected_type()
        try:
            parsed = parse_json(text)
        except JSONInputError as exc:
            raise forms.ValidationError(
                _("%(error)s Example: %(example)s") % {"error": exc, "example": self.example}
            ) from None
        if not isinstance(parsed, self.expected_type):
            if self.expected_type is list:
                raise forms.ValidationError(_("Must be a list, e.g. %(example)s.") % {"example": self.example})
            raise forms.ValidationError(_("Must be an object, e.g. %(example)s.") % {"example": self.example})
        return parsed

    def prepare_value(self, value):
        if isinstance(value, (list, dict)):
            return json.dumps(value)
        return value


class TaskArgumentsMixin:
    """Arguments of a catalogued task: a typed form from its signature, or raw JSON.

    Tasks whose parameters can all be shown as fields get typed fields
    (``mode=typed``); every task can also take raw JSON arguments (``mode=json``).
    Both sets of fields are always on the form, so the page can switch between
    them and show the chosen one again with its errors; the fields of the mode
    not chosen are not required and their errors are dropped (the page's script
    disables them, so the browser neither checks nor sends them).
    ``argument_mode`` is the chosen mode.
    Call ``add_argument_fields(entry, data, args=..., kwargs=...)`` in ``__init__``.
    """

    def add_argument_fields(self, entry, data, *, args=None, kwargs=None) -> None:
        self.entry = entry
        self.typed_available = arguments.has_typed_form(entry.signature)
        if self.typed_available:
            self.fields["mode"] = forms.ChoiceField(
                choices=[("typed", _("Form")), ("json", _("Raw JSON"))],
                initial="typed",
                widget=forms.RadioSelect,
                required=False,
            )
        self.fields["args"] = JSONTextField(
            expected_type=list, example="[1, 2]", required=False, label=_("Positional arguments (JSON list)")
        )
        self.fields["kwargs"] = JSONTextField(
            expected_type=dict, example='{"x": 1}', required=False, label=_("Keyword arguments (JSON object)")
        )
        defaults = {
            name: param.default
            for name, param in entry.signature.parameters.items()
            if param.default is not param.empty and _is_json(param.default)
        }
        self.fields["args"].initial = args or []
        self.fields["kwargs"].initial = kwargs if kwargs is not None else defaults
        if self.typed_available:
            hints = arguments.type_hints(entry.func)
            self.fields.update(arguments.argument_fields(entry.signature, hints))
            if args or kwargs:
                for name, value in arguments.field_initial_from_arguments(
                    entry.signature, hints, args or [], kwargs or {}
                ).items():
                    self.fields[name].initial = value
        self.argument_mode = self._mode(data)
        self.inactive_argument_fields = []
        if self.typed_available:
            self.fields["mode"].initial = self.initial["mode"] = self.argument_mode
            inactive = ["args", "kwargs"] if self.argument_mode == "typed" else self._typed_names()
            self.inactive_argument_fields = inactive
            if self.is_bound and any(name not in self.data for name in inactive):
                self.data = self.data.copy()  # show the defaults again in the fields not sent
            for name in inactive:
                field = self.fields[name]
                field.required = False  # no "required" in the page: cannot block the other mode
                if self.is_bound and name not in self.data:
                    self.data[name] = field.prepare_value(field.initial) if field.initial is not None else ""

    def _post_clean(self):
        # The fields of the mode not chosen are not part of the launch: their errors do not count.
        super()._post_clean()
        for name in getattr(self, "inactive_argument_fields", []):
            self._errors.pop(name, None)
            self.cleaned_data.pop(name, None)

    @property
    def mode(self) -> str:
        """The chosen mode (``argument_mode``); templates must use ``argument_mode``, as
        ``form.mode`` there is the radio field."""
        return self.argument_mode

    def _typed_names(self) -> list[str]:
        return [name for name in self.fields if name.startswith(arguments.PREFIX)]

    def _mode(self, data) -> str:
        if not self.typed_available:
            return "json"
        if data is None:
            # A page's first view: ?mode=json (or raw) from the mode links that work without JavaScript.
            requested = {"raw": "json"}.get(self.initial.get("mode"), self.initial.get("mode"))
            return requested if requested in ("typed", "json") else "typed"
        # A post without a mode is typed when it carries typed fields (API clients send JSON).
        explicit = data.get("mode")
        if explicit in ("typed", "json"):
            return explicit
        return "typed" if any(key.startswith(arguments.PREFIX) for key in data) else "json"

    def argument_fields(self):
        return [self[name] for name in self._typed_names()]

    def json_fields(self):
        return [self[name] for name in ("args", "kwargs")]

    def arguments(self) -> tuple[list, dict]:
        """The task's positional and keyword arguments from the cleaned form."""
        if self.argument_mode == "typed":
            return arguments.arguments_from_cleaned(self.entry.signature, self.cleaned_data)
        return self.cleaned_data["args"], self.cleaned_data["kwargs"]

    def argument_refusal(self, exc):
        """``exc`` (an ``InvalidLaunch``) with argument errors moved onto the typed fields when they are used."""
        from taskcenter.services.launch import InvalidLaunch

        if self.argument_mode != "typed" or not getattr(exc, "arguments", None):
            return exc
        errors = {k: v for k, v in exc.errors.items() if k not in ("args", "kwargs")}
        for name, messages in exc.arguments.items():
            errors.setdefault(arguments.PREFIX + name, []).extend(messages)
        leftover = [m for k in ("args", "kwargs") for m in exc.errors.get(k, []) if not _mentions(m, exc.arguments)]
        if leftover:
            errors.setdefault("__all__", []).extend(leftover)
        return InvalidLaunch(errors, exc.arguments)


def _mentions(message: str, by_argument: dict) -> bool:
    return any(message in messages for messages in by_argument.values())


class LaunchForm(TaskArgumentsMixin, forms.Form):
    """Arguments and options of one launch of a catalogued task."""

    queue = forms.ChoiceField(choices=(), label=_("Queue"))
    priority = forms.ChoiceField(choices=Priority.choices(), label=_("Priority"))
    countdown = forms.IntegerField(
        required=False,
        min_value=0,
        label=_("Countdown (seconds)"),
        help_text=_("Leave empty to run as soon as a worker is free."),
    )
    eta = SafeDateTimeField(
        required=False,
        label=_("Or run at (ETA)"),
        help_text=_("A time in your time zone; instead of a countdown."),  # named in __init__
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    expires = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=INT_MAX,
        label=_("Expires after (seconds)"),
        help_text=_("A run not started within this time is dropped. Leave empty to keep it until it runs."),
    )
    dedup_key = forms.CharField(
        required=False,
        max_length=255,
        label=_("De-duplication key"),
        help_text=_("Refuse this launch while a run with the same key is pending or running."),
    )
    option_names = ("queue", "priority", "countdown", "eta", "expires", "dedup_key")

    def __init__(self, data=None, *, entry, **kwargs):
        super().__init__(data, **kwargs)
        self.fields["queue"].choices = [(name, name) for name in settings.TASKCENTER_QUEUES]
        self.fields["queue"].initial = entry.default_queue
        self.fields["priority"].initial = entry.priority.value
        self.fields["countdown"].widget.attrs.update({"min": 0, "max": settings.TASKCENTER_MAX_COUNTDOWN})
        self.fields["eta"].help_text = _(
            "In %(zone)s (your time zone, set in Preferences); instead of a countdown."
        ) % {"zone": zone_label()}
        self.add_argument_fields(entry, data)

    def option_fields(self):
        return [self[name] for name in self.option_names]


class TimeRangePageForm(forms.Form):
    """A list page's filter: a creation time range (from before to) and keyset page cursors."""

    created_from = SafeDateTimeField(
        required=False, label=_("From"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    created_to = SafeDateTimeField(
        required=False, label=_("To"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    before = forms.IntegerField(required=False, min_value=1, max_value=INT_MAX, widget=forms.HiddenInput)
    after = forms.IntegerField(required=False, min_value=0, max_value=INT_MAX, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        zone = _("In %(zone)s.") % {"zone": zone_label()}
        self.fields["created_from"].help_text = self.fields["created_to"].help_text = zone

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("created_from"), cleaned.get("created_to")
        if start and end and start >= end:
            self.add_error("created_to", _("Must be after the start of the range."))
        return cleaned


class RunFilterForm(TimeRangePageForm):
    """Filters of the run history; invalid values are reported, not ignored."""

    field_order = (
        "state", "task_name", "queue", "worker", "schedule", "launched_by", "source", "task_id", "text", "sort",
        "created_from", "created_to",
    )  # fmt: skip

    state = forms.ChoiceField(
        choices=[("", _("Any state"))] + [(s, s) for s in RUN_STATES], required=False, label=_("State")
    )
    task_name = forms.CharField(required=False, max_length=255, label=_("Task"))
    queue = forms.CharField(required=False, max_length=200, label=_("Queue"))
    worker = forms.CharField(required=False, max_length=255, label=_("Worker"))
    schedule = forms.CharField(
        required=False, max_length=255, label=_("Schedule"), help_text=_("A periodic task's name.")
    )
    launched_by = forms.CharField(required=False, max_length=150, label=_("Launched by"), help_text=_("A username."))
    source = forms.ChoiceField(choices=[("", _("Any source")), *RunSource.choices], required=False, label=_("Source"))
    task_id = forms.CharField(
        required=False, max_length=255, label=_("Task id"), help_text=_("The id, or the start of one.")
    )
    text = forms.CharField(
        required=False, max_length=200, label=_("Search"),
        help_text=_("Words in the arguments, result or exception (each word or the start of one)."),
    )  # fmt: skip
    sort = forms.ChoiceField(
        required=False, label=_("Order"),
        choices=[("", _("Newest first")), ("runtime", _("Longest run time first"))],
    )  # fmt: skip


def _is_json(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


class RetryForm(forms.Form):
    """The arguments of a re-run, prefilled with the original run's."""

    args = JSONTextField(
        expected_type=list, example="[1, 2]", required=False, label=_("Positional arguments (JSON list)")
    )
    kwargs = JSONTextField(
        expected_type=dict, example='{"x": 1}', required=False, label=_("Keyword arguments (JSON object)")
    )


class BulkRetryForm(forms.Form):
    """Runs to re-run: explicit task ids, or the history filter they were shown under."""

    task_ids = forms.MultipleChoiceField(required=False)
    confirm = forms.BooleanField(required=False)
    scope = forms.ChoiceField(
        choices=[("selected", _("Selected runs")), ("filter", _("Every run matching the filter"))], label=_("Scope")
    )
    filter_fields = (
        "state", "task_name", "queue", "created_from", "created_to", "worker", "schedule", "launched_by", "source",
        "task_id", "text",
    )  # fmt: skip

    def __init__(self, data=None, **kwargs):
        super().__init__(data, **kwargs)
        # Any string is a candidate id; unknown ids simply match no run.
        ids = data.getlist("task_ids") if data is not None and hasattr(data, "getlist") else []
        self.fields["task_ids"].choices = [(i, i) for i in ids]
        for name in self.filter_fields:
            self.fields[name] = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("scope") == "selected" and not cleaned.get("task_ids"):
            raise forms.ValidationError(_("Select at least one run."))
        if cleaned.get("scope") == "filter":
            cleaned["task_ids"] = []
        return cleaned

    def filter_data(self) -> dict:
        return {name: self.cleaned_data.get(name, "") for name in self.filter_fields}


class BatchLaunchForm(forms.Form):
    """Items to split into batches, one run per batch."""

    items = JSONTextField(expected_type=list, example="[1, 2, 3, 4]", label=_("Items (JSON list)"))
    batch_size = forms.IntegerField(min_value=1, max_value=INT_MAX, initial=10, label=_("Batch size"))
    kwargs = JSONTextField(
        expected_type=dict, example='{"x": 1}', required=False, label=_("Other keyword arguments (JSON object)")
    )
    queue = forms.ChoiceField(choices=(), label=_("Queue"))
    priority = forms.ChoiceField(choices=Priority.choices(), label=_("Priority"))

    def __init__(self, *args, entry, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["queue"].choices = [(name, name) for name in settings.TASKCENTER_QUEUES]
        self.fields["queue"].initial = entry.default_queue
        self.fields["priority"].initial = entry.priority.value
        self.fields["items"].help_text = _("Each batch is passed as %(argument)s.") % {
            "argument": repr(entry.batch_argument)
        }


class WorkflowForm(forms.Form):
    """A chain, group or chord written as JSON."""

    spec = JSONTextField(
        expected_type=dict,
        example='{"kind": "chain", "steps": [{"task": "examples.add", "args": [1, 2]}]}',
        label=_("Workflow (JSON)"),
        widget=forms.Textarea(attrs={"rows": 14, "class": "mono", "spellcheck": "false"}),
    )
