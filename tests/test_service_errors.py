"""One error family with an HTTP status each, one broker module, and selectors that only read.

The layering rules are checked on the source itself, so a new copy of the broker
errors, a raw broker client outside ``taskcenter.broker`` or a selector that calls
a service fails here.
"""

import ast
from pathlib import Path

import pytest
from django import forms

from taskcenter.services import errors
from taskcenter.services.control import ControlError
from taskcenter.services.launch import BrokerUnavailable, DuplicateRun, InvalidLaunch, NotLaunchable
from taskcenter.services.queues import UnknownQueue
from taskcenter.services.schedules import InvalidSchedule, ScheduleForbidden
from taskcenter.services.workers import (
    ActionFailed,
    ActionRefused,
    BrokerDown,
    NoWorkerReplied,
    UnknownWorker,
)
from taskcenter.views.common import show_refusal

PACKAGE = Path(__file__).resolve().parent.parent / "taskcenter"
REFUSED, ERROR = errors.Outcome.REFUSED, errors.Outcome.ERROR


@pytest.mark.parametrize(
    ("error", "generic", "status", "outcome"),
    [
        (InvalidLaunch({"args": ["bad"]}), errors.InvalidInput, 400, REFUSED),
        (InvalidSchedule({"cron": ["bad"]}), errors.InvalidInput, 400, REFUSED),
        (ActionRefused("bad rate"), errors.InvalidInput, 400, REFUSED),
        (ScheduleForbidden("no"), errors.Forbidden, 403, REFUSED),
        (NotLaunchable("no such task"), errors.NotFound, 404, REFUSED),
        (UnknownWorker("no such worker"), errors.NotFound, 404, REFUSED),
        (UnknownQueue("no such queue"), errors.NotFound, 404, REFUSED),
        (DuplicateRun(None, "key"), errors.Conflict, 409, REFUSED),
        (ControlError("finished"), errors.Conflict, 409, REFUSED),
        (BrokerUnavailable(), errors.Unavailable, 503, ERROR),
        (ActionFailed("worker error"), errors.Unavailable, 503, ERROR),
        (BrokerDown("down"), errors.Unavailable, 503, ERROR),
        (NoWorkerReplied("silence"), errors.TimedOut, 504, ERROR),
    ],
)
def test_every_service_error_is_one_family_with_its_http_status(error, generic, status, outcome):
    assert isinstance(error, errors.ServiceError)
    assert isinstance(error, generic)
    assert (error.status_code, error.outcome) == (status, outcome)
    assert str(error)


def test_a_timeout_is_also_a_failure_of_the_workers():
    assert issubclass(NoWorkerReplied, ActionFailed)
    assert issubclass(errors.TimedOut, errors.Unavailable)


def test_field_errors_give_the_message_and_stay_per_field():
    error = InvalidLaunch({"args": ["x must be an integer"], "queue": ["unknown"]})
    assert str(error) == "args: x must be an integer; queue: unknown"
    assert error.errors["queue"] == ["unknown"]


class _Form(forms.Form):
    queue = forms.CharField(required=False)


def test_a_refusal_without_field_errors_shows_its_message_on_the_form():
    form = _Form({"queue": "x"})
    form.is_valid()
    show_refusal(form, BrokerDown("The message broker (Redis) is not reachable."))
    assert form.non_field_errors() == ["The message broker (Redis) is not reachable."]

    form = _Form({"queue": "x"})
    form.is_valid()
    show_refusal(form, InvalidLaunch({"queue": ["Unknown queue."]}))
    assert form.errors["queue"] == ["Unknown queue."]


def _python_files(*parts):
    return sorted(PACKAGE.joinpath(*parts).rglob("*.py"))


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_selectors_import_no_service_but_the_errors():
    offending = {
        path.name: sorted(
            name
            for name in _imported_modules(path)
            if name.startswith("taskcenter.services.") and name != "taskcenter.services.errors"
        )
        for path in _python_files("selectors")
    }
    assert {name: mods for name, mods in offending.items() if mods} == {}


def test_broker_errors_and_raw_broker_clients_live_in_the_broker_module_only():
    copies = []
    for path in _python_files():
        if path.name == "broker.py" and path.parent == PACKAGE:
            continue
        text = path.read_text()
        for marker in ("BROKER_ERRORS =", "REDIS_ERRORS", "PUBLISH_ERRORS", "default_channel.client"):
            if marker in text:
                copies.append(f"{path.relative_to(PACKAGE)}: {marker}")
    assert copies == []
