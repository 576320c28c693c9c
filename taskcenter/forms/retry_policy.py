"""The retry policy form of a task's page."""

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from taskcenter.retry_policy import BACKOFFS, MAX_RETRIES_LIMIT, InvalidPolicy, RetryPolicy, exception_class

MAX_PATHS = 20


class RetryPolicyForm(forms.Form):
    """A whole retry policy; exceptions as dotted paths, one per line."""

    max_retries = forms.IntegerField(min_value=0, max_value=MAX_RETRIES_LIMIT, label=_("Max retries"))
    backoff = forms.ChoiceField(choices=[(b, b) for b in BACKOFFS], label=_("Backoff"))
    delay = forms.FloatField(
        min_value=0, label=_("Delay (s)"), help_text=_("Fixed delay, or the first exponential one.")
    )
    max_delay = forms.FloatField(min_value=0, label=_("Max delay (s)"))
    jitter = forms.BooleanField(
        required=False, label=_("Jitter"), help_text=_("Wait a random 0 to the computed delay (full jitter).")
    )
    retry_on = forms.CharField(
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 3, "class": "mono"}),
        label=_("Retry on"),
        help_text=_(
            "Exception classes retried, one dotted path a line (e.g. ConnectionError); empty: every exception."
        ),
    )
    never_retry = forms.CharField(
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 3, "class": "mono"}),
        label=_("Never retry"),
        help_text=_("Exception classes that fail the run at once, whatever retry_on says."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        limit = settings.TASKCENTER_MAX_COUNTDOWN
        self.fields["max_delay"].help_text = _(
            "At most %(limit)s s (TASKCENTER_MAX_COUNTDOWN, the longest delay of a launch)."
        ) % {"limit": limit}
        for name in ("delay", "max_delay"):
            self.fields[name].widget.attrs["max"] = limit

    @classmethod
    def initial_from(cls, policy: RetryPolicy) -> dict:
        data = policy.as_json()
        return {**data, "retry_on": "\n".join(data["retry_on"]), "never_retry": "\n".join(data["never_retry"])}

    def clean_max_delay(self):
        value = self.cleaned_data["max_delay"]
        limit = settings.TASKCENTER_MAX_COUNTDOWN
        if value > limit:
            raise forms.ValidationError(
                _("At most %(limit)s s (TASKCENTER_MAX_COUNTDOWN, the longest delay of a launch).") % {"limit": limit}
            )
        return value

    def clean_delay(self):
        value = self.cleaned_data["delay"]
        if value > settings.TASKCENTER_MAX_COUNTDOWN:
            raise forms.ValidationError(
                _("At most %(limit)s s (TASKCENTER_MAX_COUNTDOWN).") % {"limit": settings.TASKCENTER_MAX_COUNTDOWN}
            )
        return value

    def _classes(self, name: str) -> tuple:
        paths = [line.strip() for line in self.cleaned_data[name].splitlines() if line.strip()]
        if len(paths) > MAX_PATHS:
            raise forms.ValidationError(_("At most %(count)d exception classes.") % {"count": MAX_PATHS})
        classes, errors = [], []
        for path in paths:
            try:
                classes.append(exception_class(path))
            except InvalidPolicy as exc:
                errors.append(str(exc))
        if errors:
            raise forms.ValidationError(errors)
        return tuple(classes)

    def clean_retry_on(self):
        return self._classes("retry_on")

    def clean_never_retry(self):
        return self._classes("never_retry")

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            data["policy"] = RetryPolicy(
                max_retries=data["max_retries"],
                backoff=data["backoff"],
                delay=data["delay"],
                max_delay=data["max_delay"],
                jitter=data["jitter"],
                retry_on=data["retry_on"],
                never_retry=data["never_retry"],
            )
        except InvalidPolicy as exc:
            raise forms.ValidationError(str(exc)) from exc
        return data
