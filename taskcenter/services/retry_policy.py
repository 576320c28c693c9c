"""Operators' retry policy overrides: save or reset one, kept in the database and copied to Redis for workers."""

import json
import logging

from django.db import transaction
from django.utils.translation import gettext, gettext_noop

from taskcenter import catalogue
from taskcenter.broker import BROKER_ERRORS, broker_client, broker_down_message
from taskcenter.models import RetryPolicyOverride
from taskcenter.retry_policy import OVERRIDES_KEY, RetryPolicy
from taskcenter.services.audit import Action, Outcome, audit_record
from taskcenter.services.errors import NotFound
from taskcenter.services.workers import BrokerDown

logger = logging.getLogger(__name__)


class UnknownTask(NotFound):
    """The task is not in the catalogue."""


def _entry(task_name: str) -> catalogue.CatalogueEntry:
    entry = catalogue.get_entry(task_name)
    if entry is None:
        raise UnknownTask(gettext("%(name)s is not a catalogued task.") % {"name": repr(task_name)})
    return entry


def retry_policy_save(*, task_name: str, policy: RetryPolicy, actor) -> RetryPolicyOverride:
    """Make ``policy`` the retry policy of ``task_name`` for every worker, from its next failure on.

    The override is written to the database and to Redis in one step: when Redis does not
    answer, nothing is saved (``BrokerDown``). Audited either way.
    """
    entry = _entry(task_name)
    data = policy.as_json()
    detail = {"policy": data, "default": entry.retry.as_json() if entry.retry else None}
    changed_by = actor if getattr(actor, "pk", None) else None
    try:
        with transaction.atomic():
            override, _ = RetryPolicyOverride.objects.update_or_create(
                task_name=task_name, defaults={"policy": data, "changed_by": changed_by}
            )
            with broker_client() as client:
                client.hset(OVERRIDES_KEY, task_name, json.dumps(data))
    except BROKER_ERRORS as exc:
        message = broker_down_message(gettext_noop("the retry policy was not changed"))
        audit_record(actor=actor, action=Action.RETRY_POLICY, target=task_name, outcome=Outcome.ERROR,
                     message=message, detail=detail)  # fmt: skip
        raise BrokerDown(message) from exc
    audit_record(actor=actor, action=Action.RETRY_POLICY, target=task_name, message=gettext("Retry policy overridden."),
                 detail=detail)  # fmt: skip
    return override


def retry_policy_reset(*, task_name: str, actor) -> None:
    """Remove the override of ``task_name``: the policy in its code (or none) applies again."""
    _entry(task_name)
    try:
        with transaction.atomic():
            RetryPolicyOverride.objects.filter(task_name=task_name).delete()
            with broker_client() as client:
                client.hdel(OVERRIDES_KEY, task_name)
    except BROKER_ERRORS as exc:
        message = broker_down_message(gettext_noop("the retry policy was not reset"))
        audit_record(actor=actor, action=Action.RETRY_POLICY, target=task_name, outcome=Outcome.ERROR, message=message)
        raise BrokerDown(message) from exc
    audit_record(
        actor=actor, action=Action.RETRY_POLICY, target=task_name, message=gettext("Retry policy reset to the code's.")
    )


def retry_policies_publish() -> int:
    """Copy to Redis the overrides it lacks (it lost its data); return how many were copied.

    Called when a worker is ready: one query per worker start, none per task. Only missing
    fields are written (HSETNX), so an override saved meanwhile is never replaced by the
    older copy read here.
    """
    overrides = dict(RetryPolicyOverride.objects.values_list("task_name", "policy"))
    if not overrides:
        return 0
    with broker_client(timeout=2) as client:
        pipe = client.pipeline()
        for name, data in overrides.items():
            pipe.hsetnx(OVERRIDES_KEY, name, json.dumps(data))
        return sum(bool(written) for written in pipe.execute())
