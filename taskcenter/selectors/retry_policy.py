"""Reads of retry policies: the one in a task's code, the operator's override, the one that applies."""

from dataclasses import dataclass
from datetime import datetime

from taskcenter import catalogue
from taskcenter.models import RetryPolicyOverride
from taskcenter.retry_policy import InvalidPolicy, RetryPolicy
from taskcenter.selectors.scheduled import waiting_until


@dataclass(frozen=True)
class PolicyView:
    """A task's retry policies as its page shows them."""

    default: RetryPolicy | None  # None: the task's code declares none
    override: RetryPolicyOverride | None
    current: RetryPolicy | None  # None: failures are not retried


def retry_policy_of(task_name: str) -> PolicyView | None:
    """The retry policies of ``task_name``, or None when it is not a catalogued task."""
    entry = catalogue.get_entry(task_name)
    if entry is None:
        return None
    override = RetryPolicyOverride.objects.select_related("changed_by").filter(task_name=task_name).first()
    current = entry.retry
    if override is not None:
        try:
            current = RetryPolicy.from_json(override.policy)
        except InvalidPolicy:  # a class named in it was removed from the code: workers use the default too
            pass
    return PolicyView(default=entry.retry, override=override, current=current)


@dataclass(frozen=True)
class RetryStatus:
    """Where a run of a task with a retry policy stands: attempt n of m, and when the next one is due."""

    attempt: int
    of: int
    next_at: datetime | None


def run_retry_status(run) -> RetryStatus | None:
    """The retry status of ``run``, or None when its task has no retry policy."""
    view = retry_policy_of(run.task_name)
    if view is None or view.current is None:
        return None
    attempts = run.attempt_list
    last = attempts[-1] if attempts else None
    waiting = last is not None and last["ended"] == "retried" and not run.is_finished
    next_at = None
    if waiting:
        # The monitor learns the due time when the retry's message is delivered; while it waits
        # in the scheduled set, the set knows it.
        next_at = last["next_at"] or waiting_until(run.task_id)
    return RetryStatus(attempt=len(attempts), of=view.current.max_retries + 1, next_at=next_at)
