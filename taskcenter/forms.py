"""Forms: parse and check operator input before it reaches a service."""

import json

from django import forms
from django.conf import settings

from taskcenter.models import RUN_STATES
from taskcenter.priorities import Priority


class JSONTextField(forms.CharField):
    """A textarea holding JSON of one expected type (list or dict)."""

    def __init__(self, *, expected_type: type, example: str, **kwargs):
        self.expected_type = expected_type
        self.example = example
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3, "class": "mono", "spellcheck": "false"}))
        super().__init__(**kwargs)

    def to_python(self, value):
        text = (value or "").strip()
        if not text:
            return self.expected_type()
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}). Example: {self.example}"
            ) from None
        if not isinstance(parsed, self.expected_type):
            kind = "a list" if self.expected_type is list else "an object"
            raise forms.ValidationError(f"Must be {kind}, e.g. {self.example}.")
        return parsed

    def prepare_value(self, value):
        if isinstance(value, (list, dict)):
            return json.dumps(value)
        return value


class LaunchForm(forms.Form):
    """Arguments and options of one launch of a catalogued task."""

    args = JSONTextField(expected_type=list, example="[1, 2]", required=False, label="Positional arguments (JSON list)")
    kwargs = JSONTextField(
        expected_type=dict, example='{"x": 1}', required=False, label="Keyword arguments (JSON object)"
    )
    queue = forms.ChoiceField(choices=())
    priority = forms.ChoiceField(choices=Priority.choices())
    countdown = forms.IntegerField(
        required=False,
        min_value=0,
        label="Countdown (seconds)",
        help_text="Leave empty to run as soon as a worker is free.",
    )

    def __init__(self, *args, entry, **kwargs):
        super().__init__(*args, **kwargs)
        self.entry = entry
        self.fields["queue"].choices = [(name, name) for name in settings.TASKCENTER_QUEUES]
        self.fields["queue"].initial = entry.default_queue
        self.fields["priority"].initial = entry.priority.value
        self.fields["countdown"].widget.attrs.update({"min": 0, "max": settings.TASKCENTER_MAX_COUNTDOWN})
        self.fields["kwargs"].initial = {
            name: param.default
            for name, param in entry.signature.parameters.items()
            if param.default is not param.empty and _is_json(param.default)
        }


class RunFilterForm(forms.Form):
    """Filters of the run history; invalid values are reported, not ignored."""

    state = forms.ChoiceField(choices=[("", "Any state")] + [(s, s) for s in RUN_STATES], required=False)
    task_name = forms.CharField(required=False, max_length=255, label="Task")
    queue = forms.CharField(required=False, max_length=200)
    created_from = forms.DateTimeField(
        required=False, label="From", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    created_to = forms.DateTimeField(
        required=False, label="To", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("created_from"), cleaned.get("created_to")
        if start and end and start >= end:
            self.add_error("created_to", "Must be after the start of the range.")
        return cleaned


def _is_json(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
