"""Property-based fuzz of every form and every query-string filter: no answer of 500 or more, nothing half-written.

A logged-in superuser posts and gets with a real Redis (no worker). Field names and
valid choices are read from the forms themselves, so new fields are fuzzed too.
Each value is either a valid choice or something hostile (deep JSON, huge integers,
year-1 dates, NUL bytes, odd ids). Every 5xx of a run is collected and listed in the
failure message, with its URL, input and exception.

``FUZZ_EXAMPLES=500 pytest tests/test_fuzz.py --timeout 3600`` runs more examples and the
full sweep (the suite's default takes about a minute).
"""

import json
import logging
import os
import time
import traceback
from pathlib import Path
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from taskcenter import catalogue
from taskcenter.models import Batch, Run, Workflow

pytestmark = pytest.mark.django_db
logger = logging.getLogger(__name__)
#: Answers slower than this are logged (not failed): a form that takes seconds is worth knowing about.
SLOW_SECONDS = 2.0

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis folder in the work tree
    phases=[Phase.explicit, Phase.generate],  # failures are collected, not shrunk
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: Fewer examples for pages that wait for the workers' replies (about 1 s each, no worker runs here).
SLOW = settings(FUZZ, max_examples=max(2, EXAMPLES // 4) if "FUZZ_EXAMPLES" in os.environ else 1)

HOSTILE = [
    "",
    " ",
    "0",
    "-1",
    "1.5",
    "2147483648",
    "9223372036854775808",
    "-9223372036854775809",
    "9" * 5000,
    "1e309",
    "nan",
    "-inf",
    "0001-01-01 00:00:00",
    "0001-01-01",
    "0001-01-01T00:00",
    "9999-12-31 23:59:59",
    "2026-02-30 25:61",
    "\x00",
    "a\x00b",
    "null",
    "true",
    "[]",
    "{}",
    "[" * 3000 + "]" * 3000,
    '{"a": ' * 1500 + "1" + "}" * 1500,
    "[" + "9" * 5000 + "]",
    '{"x": ' + "9" * 5000 + "}",
    '["a", 2]',
    '[1, "x", 3]',
    '{"": 1}',
    '{"x": 1, "y": 2, "z": 3}',
    "x/../y",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "%00",
    "é中文🙂",
    "x" * 3000,
]
#: The values every field and filter gets once, the others valid (a deterministic sweep before the random examples).
SWEEP = [
    "",
    "-1",
    "9223372036854775808",
    "9" * 5000,
    "1e309",
    "0001-01-01 00:00:00",
    "9999-12-31 23:59:59",
    "\x00",
    "[" * 3000 + "]" * 3000,
    '{"a": ' * 1500 + "1" + "}" * 1500,
    "[" + "9" * 5000 + "]",
    '["a", 2]',
    "x/../y",
    "x" * 3000,
]
#: The sweep of slow pages (about 0.1 s a request, or a wait for workers' replies) unless FUZZ_EXAMPLES is set:
#: one value per known cause.
QUICK_SWEEP = SWEEP if "FUZZ_EXAMPLES" in os.environ else [
    "9" * 5000, "[" * 3000 + "]" * 3000, "9223372036854775808", "0001-01-01 00:00:00", "\x00", "1e309",
]  # fmt: skip
hostile = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=30), st.integers().map(str))


class Outcome:
    """The 5xx answers of one test, reported together at its end, grouped by page and exception."""

    def __init__(self):
        self.failures: dict[tuple, list] = {}
        self.slow: list[str] = []

    def request(self, client, method: str, url: str, data=None):
        began = time.monotonic()
        response = getattr(client, method)(url, data or {})
        seconds = time.monotonic() - began
        if seconds > SLOW_SECONDS:
            self.slow.append(f"{seconds:.1f} s: {method.upper()} {url} {_short(data, 200)}")
        if response.status_code >= 500 and not (url == "/readyz" and response.status_code == 503):
            exc = getattr(response, "exc_info", None)
            error = traceback.format_exception_only(exc[0], exc[1])[-1].strip()[:200] if exc else ""
            frame = traceback.extract_tb(exc[2])[-1] if exc else None
            where = f"{Path(frame.filename).name}:{frame.lineno}" if frame else ""
            key = (method.upper(), _page(url), response.status_code, error.split(":")[0], where)
            self.failures.setdefault(key, []).append(f"{url} {_short(data)} -> {error}")
        return response

    def sweep(self, client, method: str, url: str, base: dict, names, *, after=None, values=SWEEP):
        """Request ``url`` once per name and ``SWEEP`` value, other fields from ``base``; ``after(data, response)``."""
        for name in names:
            for value in values:
                data = {**base, name: value}
                response = self.request(client, method, url, data)
                if after is not None:
                    after(data, response)

    def check(self):
        """Fail with every 5xx collected (called after all examples ran), one group per page and cause."""
        if self.slow:
            logger.warning("Slow answers:\n%s", "\n".join(self.slow))
        lines = []
        for (method, page, status, error, where), cases in self.failures.items():
            lines.append(f"[{len(cases)}x] {method} {page} -> {status} {error} at {where}\n    e.g. {cases[0]}")
        total = sum(len(cases) for cases in self.failures.values())
        assert not self.failures, f"{total} answers >= 500 in {len(lines)} groups:\n" + "\n".join(lines)


def _page(url: str) -> str:
    """The URL with ids and names replaced, so answers of one page group together."""
    path = url.split("?")[0]
    parts = path.strip("/").split("/")
    known = {"runs", "tasks", "schedules", "queues", "workers", "admin", "taskcenter", "django_celery_beat",
             "periodictask", "run", "auditentry", "retry", "cancel", "launch", "batch", "pause", "resume", "purge",
             "pool", "edit", "change", "add", "new", "actions", "rate-limits", "progress", "workflows", "audit",
             "dashboard", "alerts", "readyz", "healthz", "metrics", ""}  # fmt: skip
    return "/" + "/".join(part if part in known else "<x>" for part in parts) + "/"


def _short(data, limit: int = 300) -> str:
    text = repr(data)
    return text if len(text) < limit else text[:limit] + f"... ({len(text)} chars)"


@pytest.fixture
def admin_client(redis_server, django_user_model):
    user = django_user_model.objects.create_superuser(username="fuzzer", password="pw-fuzzer-1")
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


@pytest.fixture
def outcome():
    return Outcome()


@pytest.fixture
def a_run(admin_client):
    from taskcenter.services.launch import run_launch

    return run_launch(task_name="examples.add", args=[1, 2], launched_by=get_user_model().objects.get())


@pytest.fixture
def a_schedule(admin_client):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
    return PeriodicTask.objects.create(name="fuzzed schedule", task="examples.add", interval=every, args="[1, 2]")


def field_values(form) -> dict:
    """A strategy per field of ``form``: one of its valid values, or something hostile."""
    strategies = {}
    for name, field in form.fields.items():
        valid = [str(value) for value, _ in getattr(field, "choices", []) if not isinstance(value, list | tuple)]
        initial = form.initial.get(name, field.initial)
        if initial not in (None, "") and not callable(initial):
            valid.append(initial if isinstance(initial, str) else json.dumps(initial, default=str))
        strategies[name] = st.one_of(st.sampled_from(valid), hostile) if valid else hostile
    return strategies


def valid_data(form, **fixed) -> dict:
    """One valid-looking value per field of ``form`` (its first choice, its initial value, or "1")."""
    data = {}
    for name, field in form.fields.items():
        choices = [str(v) for v, _ in getattr(field, "choices", []) if v not in ("", None) and not isinstance(v, list)]
        initial = form.initial.get(name, field.initial)
        if choices:
            data[name] = choices[0]
        elif initial not in (None, "") and not callable(initial):
            data[name] = initial if isinstance(initial, str) else json.dumps(initial, default=str)
        else:
            data[name] = "1"
    return data | fixed


def form_data(form, **fixed) -> st.SearchStrategy:
    """Dictionaries for posting ``form``: every field fuzzed, some fields possibly left out, ``fixed`` kept."""
    values = field_values(form)
    return st.fixed_dictionaries(
        {name: strategy for name, strategy in values.items() if name not in fixed},
    ).flatmap(
        lambda data: st.sets(st.sampled_from(sorted(data) or [""])).map(
            lambda dropped: {k: v for k, v in data.items() if k not in dropped} | fixed
        )
    )


def query(names: list[str]) -> st.SearchStrategy:
    """Query strings: any subset of ``names``, each with a hostile value, and maybe an unknown parameter."""
    return st.dictionaries(st.sampled_from([*names, "zzz"]), hostile, max_size=len(names) + 1)


def counts() -> dict:
    return {model.__name__: model.objects.count() for model in (Run, Batch, Workflow)}


# --- Query-string filters of the pages ---------------------------------------------------


def test_fuzz_dashboard_and_alerts_filters(admin_client, outcome):
    names = ["refresh", "window", "queue", "task_name"]
    for url in ("/dashboard/", "/alerts/", "/readyz"):
        outcome.sweep(admin_client, "get", url, {}, names)

    @FUZZ
    @given(params=query(names))
    def fuzz(params):
        for url in ("/dashboard/", "/alerts/", "/readyz", "/healthz", "/metrics"):
            outcome.request(admin_client, "get", url, params)

    fuzz()
    outcome.check()


def test_fuzz_queues_and_workers_pages(admin_client, outcome):
    @SLOW
    @given(params=query(["q", "state", "before"]))
    def fuzz(params):
        for url in ("/queues/", "/workers/"):
            outcome.request(admin_client, "get", url, params)

    fuzz()
    outcome.check()


def test_fuzz_history_filters_and_run_ids(admin_client, outcome, a_run):
    names = ["state", "task_name", "queue", "created_from", "created_to", "before", "after", "page"]
    outcome.sweep(admin_client, "get", "/runs/", {}, names)
    outcome.sweep(admin_client, "get", "/runs/progress/", {}, ["ids"])
    for odd_id in SWEEP:
        outcome.request(admin_client, "get", f"/runs/{quote(odd_id, safe='') or 'x'}/")

    @FUZZ
    @given(params=query(names), odd_id=hostile)
    def fuzz(params, odd_id):
        outcome.request(admin_client, "get", "/runs/", params)
        outcome.request(admin_client, "get", "/runs/progress/", {"ids": f"{a_run.task_id},{odd_id}"})
        outcome.request(admin_client, "get", f"/runs/{quote(odd_id, safe='') or 'x'}/", params)
        outcome.request(admin_client, "get", f"/runs/{a_run.task_id}/", params)

    fuzz()
    outcome.check()


def test_fuzz_audit_filters(admin_client, outcome):
    names = ["action", "outcome", "actor", "target", "task_id", "at_from", "at_to", "before"]
    outcome.sweep(admin_client, "get", "/audit/", {}, names)

    @FUZZ
    @given(params=query(names))
    def fuzz(params):
        outcome.request(admin_client, "get", "/audit/", params)

    fuzz()
    outcome.check()


def test_fuzz_schedule_pages_filters(admin_client, outcome, a_schedule):
    outcome.sweep(admin_client, "get", "/schedules/", {}, ["q", "show", "after"])
    outcome.sweep(admin_client, "get", f"/schedules/{a_schedule.pk}/", {}, ["before"])
    outcome.sweep(admin_client, "get", "/schedules/new/", {}, ["task"])

    @FUZZ
    @given(params=query(["q", "show", "after", "before", "task"]), odd_name=hostile)
    def fuzz(params, odd_name):
        outcome.request(admin_client, "get", "/schedules/", params)
        outcome.request(admin_client, "get", f"/schedules/{a_schedule.pk}/", params)
        outcome.request(admin_client, "get", "/schedules/new/", {"task": odd_name})
        outcome.request(admin_client, "get", f"/tasks/{quote(odd_name, safe='') or 'x'}/launch/")
        outcome.request(admin_client, "get", "/", params)

    fuzz()
    outcome.check()


def test_fuzz_admin_changelists_of_taskcenter_models(admin_client, outcome, a_run):
    names = ["q", "o", "p", "source", "priority", "action", "outcome"]
    for url in ("/admin/taskcenter/run/", "/admin/taskcenter/auditentry/"):
        outcome.sweep(admin_client, "get", url, {}, names)

    @FUZZ
    @given(params=query([*names, "all", "e"]))
    def fuzz(params):
        for url in (
            "/admin/taskcenter/run/",
            "/admin/taskcenter/auditentry/",
            f"/admin/taskcenter/run/{a_run.pk}/change/",
        ):
            outcome.request(admin_client, "get", url, params)

    fuzz()
    outcome.check()


# --- Forms -----------------------------------------------------------------------------


def launch_form(task_name: str):
    from taskcenter.forms import LaunchForm

    return LaunchForm(entry=catalogue.get_entry(task_name))


def test_fuzz_batch_form(admin_client, outcome):
    from taskcenter.forms import BatchLaunchForm

    form = BatchLaunchForm(entry=catalogue.get_entry("examples.sum_batch"))
    base = valid_data(form, items="[1, 2, 3]", kwargs="{}")
    outcome.sweep(admin_client, "post", "/tasks/examples.sum_batch/batch/", base, form.fields)

    @FUZZ
    @given(data=form_data(form))
    def fuzz(data):
        before = counts()
        response = outcome.request(admin_client, "post", "/tasks/examples.sum_batch/batch/", data)
        if response.status_code != 302:
            assert counts() == before, (data, response.status_code)

    fuzz()
    outcome.check()


def test_fuzz_workflow_form(admin_client, outcome):
    from taskcenter.forms import WorkflowForm

    step = {"task": "examples.add", "args": [1, 2]}
    specs = st.one_of(
        hostile,
        st.sampled_from(
            [
                json.dumps({"type": "chain", "steps": [step, step]}),
                json.dumps({"type": "group", "steps": [step] * 3}),
                json.dumps({"type": "chord", "steps": [step], "callback": {"task": "examples.sum_batch"}}),
                json.dumps({"type": "chain", "steps": [{"task": "examples.add", "args": ["a", 2]}]}),
                json.dumps({"type": "chain", "steps": [{"task": "celery.map", "args": []}]}),
                json.dumps({"type": "group", "steps": [step] * 5000}),
            ]
        ),
    )
    base = form_data(WorkflowForm())
    outcome.sweep(admin_client, "post", "/workflows/new/", valid_data(WorkflowForm()), WorkflowForm().fields)

    @FUZZ
    @given(data=base, spec=specs)
    def fuzz(data, spec):
        before = counts()
        response = outcome.request(admin_client, "post", "/workflows/new/", {**data, "spec": spec})
        if response.status_code != 302:
            assert counts() == before, (spec[:200], response.status_code)

    fuzz()
    outcome.check()


def test_fuzz_retry_and_bulk_retry_forms(admin_client, outcome, a_run):
    from taskcenter.forms import BulkRetryForm, RetryForm

    retry = form_data(RetryForm())
    bulk = form_data(BulkRetryForm())
    outcome.sweep(
        admin_client, "post", f"/runs/{a_run.task_id}/retry/", {"args": "[1, 2]", "kwargs": "{}"}, RetryForm().fields
    )
    bulk_base = {"task_ids": [a_run.task_id], "scope": "selected"}
    outcome.sweep(admin_client, "post", "/runs/retry/", bulk_base, [*BulkRetryForm().fields, "task_ids"])

    @FUZZ
    @given(data=retry, bulk_data=bulk, odd_id=hostile)
    def fuzz(data, bulk_data, odd_id):
        before = counts()
        response = outcome.request(admin_client, "post", f"/runs/{a_run.task_id}/retry/", data)
        if response.status_code != 302:
            assert counts() == before, (data, response.status_code)
        outcome.request(admin_client, "post", "/runs/retry/", {**bulk_data, "task_ids": [a_run.task_id, odd_id]})
        outcome.request(admin_client, "post", f"/runs/{quote(odd_id, safe='') or 'x'}/retry/", data)
        outcome.request(admin_client, "post", f"/runs/{quote(odd_id, safe='') or 'x'}/cancel/", {"terminate": odd_id})

    fuzz()
    outcome.check()


def test_fuzz_schedule_form_create_and_edit(admin_client, outcome, a_schedule):
    from django_celery_beat.models import PeriodicTask

    from taskcenter.forms.schedules import ScheduleForm

    form = ScheduleForm(entry=catalogue.get_entry("examples.add"))
    base = valid_data(form, task="examples.add", name="swept", kind="interval", every="5", period="minutes")
    outcome.sweep(admin_client, "post", "/schedules/new/?task=examples.add", base, form.fields, values=QUICK_SWEEP)
    json_base = {**base, "mode": "json", "args": "[1, 2]", "kwargs": "{}"}
    outcome.sweep(admin_client, "post", "/schedules/new/?task=examples.add", json_base, ["args", "kwargs"])

    @FUZZ
    @given(data=form_data(form, task="examples.add"), edit=st.booleans())
    def fuzz(data, edit):
        schedules = PeriodicTask.objects.count()
        url = f"/schedules/{a_schedule.pk}/edit/" if edit else "/schedules/new/?task=examples.add"
        response = outcome.request(admin_client, "post", url, data)
        if response.status_code != 302:
            assert PeriodicTask.objects.count() == schedules, (data, response.status_code)

    fuzz()
    outcome.check()


def test_fuzz_schedule_actions(admin_client, outcome, a_schedule):
    actions = st.one_of(st.sampled_from(["run_now", "enable", "disable", "duplicate", "delete"]), hostile)
    outcome.sweep(admin_client, "post", "/schedules/actions/", {"action": "disable", "ids": [a_schedule.pk]}, ["ids"])

    @FUZZ
    @given(action=actions, ids=st.lists(st.one_of(hostile, st.just(str(a_schedule.pk))), max_size=4))
    def fuzz(action, ids):
        if action == "delete":
            action = "disable"  # keep the schedule for the next examples
        outcome.request(admin_client, "post", "/schedules/actions/", {"action": action, "ids": ids})

    fuzz()
    outcome.check()


def test_fuzz_queue_and_worker_actions(admin_client, outcome):
    outcome.sweep(
        admin_client,
        "post",
        "/workers/rate-limits/",
        {"task_name": "examples.add", "rate": "10/m"},
        ["task_name", "rate"],
        values=QUICK_SWEEP[:3],
    )
    for n in ("1", "9" * 5000, "1000000"):  # an unknown worker: 404, not a wait for its reply
        outcome.request(admin_client, "post", "/workers/nobody@nowhere/pool/", {"action": "grow", "n": n})
    for value in SWEEP:
        outcome.request(admin_client, "post", "/queues/default/purge/", {"confirm": value})
        outcome.request(admin_client, "post", f"/queues/{quote(value, safe='') or 'x'}/pause/")

    @SLOW
    @given(name=hostile, action=hostile, n=hostile, task_name=hostile, rate=hostile, confirm=hostile)
    def fuzz(name, action, n, task_name, rate, confirm):
        queue = quote(name, safe="") or "x"
        for verb in ("pause", "resume"):
            outcome.request(admin_client, "post", f"/queues/{queue}/{verb}/")
        outcome.request(admin_client, "post", f"/queues/{queue}/purge/", {"confirm": confirm})
        outcome.request(admin_client, "post", f"/workers/{queue}/pool/", {"action": action, "n": n})
        outcome.request(admin_client, "post", "/workers/rate-limits/", {"task_name": task_name, "rate": rate})

    fuzz()
    outcome.check()


def test_fuzz_admin_periodic_task_forms(admin_client, outcome, a_schedule):
    fields = ["name", "task", "args", "kwargs", "queue", "exchange", "routing_key", "headers", "priority",
              "expires", "expire_seconds", "one_off", "start_time", "enabled", "description", "interval"]  # fmt: skip

    base = {"name": "admin swept", "task": "examples.add", "args": "[1, 2]", "kwargs": "{}", "interval": "",
            "enabled": "on", "priority": "", "expire_seconds": "", "headers": "{}"}  # fmt: skip
    outcome.sweep(admin_client, "post", "/admin/django_celery_beat/periodictask/add/", base, fields)

    @FUZZ
    @given(data=st.fixed_dictionaries({name: hostile for name in fields}), action=hostile)
    def fuzz(data, action):
        outcome.request(admin_client, "post", "/admin/django_celery_beat/periodictask/add/", data)
        outcome.request(admin_client, "post", f"/admin/django_celery_beat/periodictask/{a_schedule.pk}/change/", data)
        outcome.request(
            admin_client,
            "post",
            "/admin/django_celery_beat/periodictask/",
            {"action": action, "_selected_action": [str(a_schedule.pk), data["name"]]},
        )
        outcome.request(admin_client, "get", "/admin/django_celery_beat/periodictask/", {"q": data["name"]})

    fuzz()
    outcome.check()


def test_fuzz_notification_forms_and_log_filters(admin_client, outcome):
    from taskcenter.forms.notifications import ChannelForm, RuleForm
    from taskcenter.models import NotificationChannel

    channel = NotificationChannel.objects.create(name="fuzzed", kind="email", addresses="ops@example.com")
    channel_base = {"name": "swept", "kind": "email", "addresses": "a@example.com", "enabled": "on"}
    rule_base = {"alert_name": "NoWorkersOnline", "channel": str(channel.pk), "enabled": "on"}
    outcome.sweep(admin_client, "post", "/notifications/channels/new/", channel_base, ChannelForm().fields)
    outcome.sweep(admin_client, "post", f"/notifications/channels/{channel.pk}/edit/", channel_base, ["kind", "url"])
    outcome.sweep(admin_client, "post", "/notifications/rules/new/", rule_base, RuleForm().fields)
    outcome.sweep(admin_client, "get", "/notifications/", {}, ["channel", "status", "alert"])

    @FUZZ
    @given(channel_data=form_data(ChannelForm()), rule_data=form_data(RuleForm()), params=query(["channel", "status"]))
    def fuzz(channel_data, rule_data, params):
        outcome.request(admin_client, "post", "/notifications/channels/new/", channel_data)
        outcome.request(admin_client, "post", "/notifications/rules/new/", rule_data)
        outcome.request(admin_client, "get", "/notifications/", params)

    fuzz()
    outcome.check()
