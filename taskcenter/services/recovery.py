"""Recovery: apply RETRY, RESUME, RESTART, SKIP or MANUAL to a run; set strategies; audit lost runs given back.

A task type's strategy is the operator's override (``RecoveryPolicy``) or the
default declared in code (``launchable_task(..., recovery=...)``). The worker
applies it after a final failure (``recovery_apply_after_failure``, called from
the dead-letter signal receiver: failure paths only); the monitor applies it to
a run whose worker is gone (``orphans_plan``, then ``recovery_record``). Operators apply any
strategy to a failed, dead-lettered or orphaned run with ``run_recover``. Every
re-run goes through ``control.run_retry`` / ``launch.run_launch``, linked to the
run it repeats (``retry_of``). See docs/operations.md.
"""

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from taskcenter import catalogue
from taskcenter.models import AuditEntry, Checkpoint, DeadLetter, RecoveryAction, RecoveryPolicy, Run, RunSource
from taskcenter.services.audit import Action, Outcome, audit_record
from taskcenter.services.errors import Conflict, InvalidInput, ServiceError
from taskcenter.strategies import RELAUNCHING, Strategy

logger = logging.getLogger(__name__)

#: States of a run a strategy may be applied to (a STARTED run only when orphaned, or forced).
RECOVERABLE_STATES = ("FAILURE", "REVOKED")
#: Runs of a lineage walked to count automatic recoveries.
LINEAGE_LIMIT = 50


class NotRecoverable(Conflict):
    """The run is not failed, dead-lettered or orphaned."""


def _strategy(value) -> Strategy:
    if value not in Strategy.values:
        message = gettext("Unknown strategy %(strategy)s; use one of %(choices)s.") % {
            "strategy": repr(value),
            "choices": ", ".join(Strategy.values),
        }
        raise InvalidInput(message, errors={"strategy": [message]})
    return Strategy(value)


def strategy_for(task_name: str) -> tuple[Strategy | None, str]:
    """The strategy applied after a final failure of ``task_name``, and the rule it comes from."""
    override = RecoveryPolicy.objects.filter(task_name=task_name).values_list("strategy", flat=True).first()
    if override:
        return Strategy(override), gettext("operator override")
    entry = catalogue.get_entry(task_name)
    if entry is not None and entry.recovery:
        return Strategy(entry.recovery), gettext("default in code")
    return None, ""


def recovery_policy_set(*, task_name: str, strategy: str, actor) -> RecoveryPolicy | None:
    """Override a task type's strategy; an empty ``strategy`` removes the override (back to the code's)."""
    audit = {"actor": actor, "action": Action.RECOVERY_POLICY, "target": task_name}
    if catalogue.get_entry(task_name) is None:
        error = InvalidInput(
            errors={"task_name": [gettext("No launchable task is named %(name)s.") % {"name": repr(task_name)}]}
        )
        audit_record(**audit, outcome=Outcome.REFUSED, message=str(error))
        raise error
    if not strategy:
        RecoveryPolicy.objects.filter(task_name=task_name).delete()
        audit_record(**audit, message=gettext("Override removed: the default in code applies."))
        return None
    strategy = _strategy(strategy)
    policy, _ = RecoveryPolicy.objects.update_or_create(
        task_name=task_name,
        defaults={
            "strategy": strategy,
            "changed_by": actor if getattr(actor, "pk", None) else None,
            "changed_at": timezone.now(),
        },
    )
    audit_record(
        **audit,
        message=gettext("Recovery strategy set to %(strategy)s.") % {"strategy": strategy},
        detail={"strategy": strategy.value},
    )
    return policy


def run_is_recoverable(run: Run) -> bool:
    """Failed, revoked, dead-lettered (unresolved) or orphaned (STARTED on a worker that is gone)."""
    from taskcenter.selectors.monitoring import stuck_runs

    if run.state in RECOVERABLE_STATES:
        return True
    if DeadLetter.objects.filter(task_id=run.task_id, resolution="").exists():
        return True
    return run.state == "STARTED" and any(r.task_id == run.task_id for r in stuck_runs(limit=1000))


def run_recover(
    *, run: Run, strategy: str, actor, rule: str = "", force: bool = False, source: RunSource = RunSource.CODE
) -> RecoveryAction:
    """Apply ``strategy`` to a failed, dead-lettered or orphaned run; return the action recorded.

    RETRY and RESUME launch the run again with its arguments (RESUME lets the new
    run read the lineage's last checkpoint); RESTART first deletes the lineage's
    checkpoints; SKIP marks it resolved; MANUAL lists it as needing attention.
    ``force`` accepts a STARTED run the monitor has not (yet) found orphaned,
    for an operator who knows its worker is gone.
    """
    audit = {"actor": actor, "action": Action.RECOVERY_APPLY, "target": run.task_name, "task_id": run.task_id}
    try:
        strategy = _strategy(strategy)
    except InvalidInput as error:
        audit_record(**audit, outcome=Outcome.REFUSED, message=str(error))
        raise
    if not (force or rule) and not run_is_recoverable(run):
        error = NotRecoverable(
            gettext("Run %(task_id)s is %(state)s; a strategy applies to failed, dead-lettered or orphaned runs only.")
            % {"task_id": run.task_id, "state": run.state}
        )
        audit_record(**audit, outcome=Outcome.REFUSED, message=str(error))
        raise error
    user = actor if getattr(actor, "pk", None) else None
    action = RecoveryAction.objects.create(
        task_id=run.task_id, task_name=run.task_name, strategy=strategy, actor=user, rule=rule[:200]
    )
    if strategy in RELAUNCHING:
        try:
            if strategy == Strategy.RESTART:
                removed = checkpoints_discard(run=run)
                action.message = gettext("%(count)s checkpoint(s) discarded. ") % {"count": removed}
            new_run = _relaunch(run, actor, source)
        except ServiceError as exc:
            action.delete()
            audit_record(**audit, outcome=Outcome.REFUSED, message=f"{strategy}: {exc}")
            raise
        action.new_task_id = new_run.task_id
        action.message += gettext("Launched again as %(task_id)s.") % {"task_id": new_run.task_id}
        DeadLetter.objects.filter(task_id=run.task_id, resolution="").update(
            resolution=DeadLetter.Resolution.REPLAYED, replayed_as=new_run.task_id, resolved_by=user,
            resolved_at=timezone.now(),
        )  # fmt: skip
    elif strategy == Strategy.SKIP:
        action.message = gettext("Marked resolved; nothing run.")
        DeadLetter.objects.filter(task_id=run.task_id, resolution="").update(
            resolution=DeadLetter.Resolution.DISCARDED, resolved_by=user, resolved_at=timezone.now()
        )
    else:
        action.message = gettext("Left for an operator.")
    action.save(update_fields=["new_task_id", "message"])
    if strategy != Strategy.MANUAL:  # a run left for an operator is resolved by what is done with it next
        RecoveryAction.objects.filter(task_id=run.task_id, strategy=Strategy.MANUAL, resolved_at=None).update(
            resolved_at=timezone.now()
        )
    by = f" by rule: {rule}" if rule else ""
    audit_record(
        **audit,
        message=f"{strategy}{by}. {action.message}",
        detail={"strategy": strategy.value, "rule": rule, "new_task_id": action.new_task_id},
    )
    logger.info("Recovery %s applied to %s [%s]%s", strategy, run.task_name, run.task_id, by)
    return action


def _relaunch(run: Run, actor, source) -> Run:
    """Launch ``run`` again through the one re-run path, linked to it (an orphaned run is still STARTED)."""
    from taskcenter.services.control import run_retry

    return run_retry(run=run, actor=actor, source=source, orphaned=not run.is_finished)


def _automatic_recoveries(run: Run) -> int:
    """How many strategies were applied automatically in ``run``'s lineage (itself and the runs before it)."""
    task_ids, current = [], run
    while current is not None and len(task_ids) < LINEAGE_LIMIT:
        task_ids.append(current.task_id)
        current = current.retry_of
    return RecoveryAction.objects.filter(task_id__in=task_ids, actor=None).exclude(rule="").count()


def recovery_apply_after_failure(*, task_id: str | None, task_name: str | None) -> RecoveryAction | None:
    """Apply the task type's strategy to a run that failed for good. Never raises (called from a worker).

    After ``TASKCENTER_RECOVERY_MAX_AUTOMATIC`` automatic recoveries in one
    lineage, the run is left MANUAL instead, so a run that always fails does not
    run forever.
    """
    if not task_id or not task_name:
        return None
    try:
        strategy, rule = strategy_for(task_name)
        if strategy is None:
            return None
        run = Run.objects.filter(task_result_id=task_id).select_related("retry_of").first()
        if run is None:
            return None
        if strategy != Strategy.MANUAL and _automatic_recoveries(run) >= settings.TASKCENTER_RECOVERY_MAX_AUTOMATIC:
            strategy, rule = Strategy.MANUAL, f"{rule}; limit of {settings.TASKCENTER_RECOVERY_MAX_AUTOMATIC} reached"
        return run_recover(run=run, strategy=strategy, actor=None, rule=rule)
    except (ServiceError, DatabaseError):
        logger.exception("Could not apply the recovery strategy of %s [%s]", task_name, task_id)
        return None


@dataclass
class BulkRecoveryResult:
    done: list[RecoveryAction] = field(default_factory=list)
    refused: list[tuple[Run, str]] = field(default_factory=list)


def runs_recover_bulk(*, runs: Iterable[Run], strategy: str, actor, source=RunSource.CODE) -> BulkRecoveryResult:
    """Apply one strategy to each run; a broker that is down stops the batch."""
    from taskcenter.services.launch import BrokerUnavailable

    result = BulkRecoveryResult()
    runs = list(runs)
    for index, run in enumerate(runs):
        try:
            result.done.append(run_recover(run=run, strategy=strategy, actor=actor, source=source))
        except BrokerUnavailable as exc:
            result.refused.extend((left, str(exc)) for left in runs[index:])
            break
        except ServiceError as exc:
            result.refused.append((run, str(exc)))
    return result


def checkpoints_discard(*, run: Run) -> int:
    """Delete the checkpoints of ``run``'s lineage (those it wrote or could resume from); return how many."""
    roots = set(Checkpoint.objects.filter(task_id=run.task_id).values_list("root_task_id", flat=True).distinct())
    roots.add(run.task_id)
    deleted, _ = Checkpoint.objects.filter(root_task_id__in=roots).delete()
    return deleted


def checkpoints_of_finished_runs(rows):
    """Narrow a ``Checkpoint`` queryset to those whose run finished or is gone (never a run that waits or runs).

    Usable as the ``expired`` filter of a retention kind.
    """
    from django.db.models import Exists, OuterRef
    from django_celery_results.models import TaskResult

    from taskcenter.models import READY_STATES

    finished_result = TaskResult.objects.filter(task_id=OuterRef("task_id"), status__in=READY_STATES)
    unfinished_run = Run.objects.filter(task_result_id=OuterRef("task_id")).exclude(recorded_state__in=READY_STATES)
    return rows.filter(~Exists(unfinished_run) | Exists(finished_result))


def orphans_plan(orphans: list) -> dict:
    """Decide the strategy of each orphaned run (``taskcenter.recovery.Restored``) found by the monitor's sweep.

    The task type's strategy (read once per task name per sweep) applies to a run
    whose worker is gone, within ``TASKCENTER_RECOVERY_MAX_AUTOMATIC`` automatic
    recoveries per lineage (``taskcenter.recovery.orphan_plan``). RESTART discards
    the run's lineage checkpoints here, before its message is given back (should the
    message turn out acknowledged meanwhile, its run had finished and needs none).
    Returns {task_id: OrphanPlan}. Raises DatabaseError.
    """
    from taskcenter.recovery import orphan_plan

    runs = {
        run.task_id: run
        for run in Run.objects.filter(task_result_id__in=[o.task_id for o in orphans]).select_related(
            "task_result", "retry_of"
        )
    }
    strategies: dict[str, tuple[Strategy | None, str]] = {}
    limit = settings.TASKCENTER_RECOVERY_MAX_AUTOMATIC
    plans = {}
    for orphan in orphans:
        run = runs.get(orphan.task_id)
        name = (run.task_name if run is not None else "") or orphan.task_name
        if name not in strategies:
            strategies[name] = strategy_for(name) if name else (None, "")
        strategy, rule = strategies[name]
        if strategy is None:
            continue
        if run is None:
            automatic = RecoveryAction.objects.filter(task_id=orphan.task_id, actor=None).exclude(rule="").count()
        else:
            automatic = _automatic_recoveries(run)
        plan = orphan_plan(
            strategy,
            rule,
            reason=orphan.reason,
            finished=run is not None and run.is_finished,
            automatic=automatic,
            limit=limit,
        )
        if plan.strategy == Strategy.RESTART:
            plan = replace(plan, discarded=checkpoints_discard(run=run or Run(task_result_id=orphan.task_id)))
        if plan.strategy is not None:
            plans[orphan.task_id] = plan
    return plans


def orphan_exception(item):
    """The exception an orphaned run taken out of the broker (SKIP, MANUAL) is recorded failed with."""
    from billiard.exceptions import WorkerLostError

    what = "skipped by strategy" if item.plan.strategy == Strategy.SKIP else "left for an operator (MANUAL)"
    return WorkerLostError(f"worker {item.holder or 'unknown'} gone; {what}")


def _orphan_message(item) -> str:
    if item.plan.strategy == Strategy.SKIP:
        return gettext("Worker %(worker)s gone: taken out of the queue and recorded failed; not run again.") % {
            "worker": item.holder
        }
    if item.plan.strategy == Strategy.MANUAL:
        return gettext("Worker %(worker)s gone: taken out of the queue and recorded failed; left for an operator.") % {
            "worker": item.holder
        }
    if item.plan.strategy == Strategy.RESUME:
        done = gettext("runs again from its last checkpoint")
    elif item.plan.strategy == Strategy.RESTART:
        done = gettext("%(count)s checkpoint(s) discarded, runs again from scratch") % {"count": item.plan.discarded}
    else:
        done = gettext("runs again with the same arguments")
    return gettext("Worker %(worker)s gone: given back to queue %(queue)s; %(done)s.") % {
        "worker": item.holder,
        "queue": item.queue,
        "done": done,
    }


def _orphan_record_failed(items: list) -> None:
    """Store FAILURE for runs taken out of the broker, through the result backend (as a worker would)."""
    from celery import current_app
    from celery.app.task import Context
    from django_celery_results.models import TaskResult

    rows = {
        row["task_id"]: row
        for row in TaskResult.objects.filter(task_id__in=[i.task_id for i in items]).values(
            "task_id", "task_name", "task_args", "task_kwargs", "worker", "periodic_task_name"
        )
    }
    for item in items:
        row = rows.get(item.task_id) or {}
        request = Context(
            id=item.task_id,
            task=row.get("task_name") or item.task_name,
            hostname=row.get("worker") or item.holder,
            argsrepr=_decoded(row.get("task_args")),
            kwargsrepr=_decoded(row.get("task_kwargs")),
            periodic_task_name=row.get("periodic_task_name"),
        )
        current_app.backend.store_result(item.task_id, orphan_exception(item), "FAILURE", request=request)


def _decoded(text):
    """A stored argument repr back to what the backend encodes again (it stores JSON of the repr)."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


@transaction.atomic
def recovery_record(*, restored: list) -> int:
    """Record what the monitor did with orphaned messages (``taskcenter.recovery.Restored``).

    Each is audited (one INSERT for all), with the strategy applied and its rule;
    each strategy applied is a ``RecoveryAction``; a run taken out of the broker
    (SKIP, MANUAL) gets its FAILURE result through the result backend. All or
    nothing, so the monitor can try again after a database error.
    """
    entries, actions = [], []
    for item in restored:
        strategy = item.plan.strategy
        by = " " + gettext("Strategy %(strategy)s by rule: %(rule)s.") % {"strategy": strategy, "rule": item.plan.rule}
        said = (
            gettext("Taken out of queue %(queue)s: %(reason)s (last held by %(holder)s).")
            if item.removed
            else gettext("Given back to queue %(queue)s: %(reason)s (last held by %(holder)s).")
        )
        entries.append(
            AuditEntry(
                actor=None,
                action=AuditEntry.Action.RUN_RECOVER,
                target=item.task_id[:255],
                task_id=item.task_id[:255],
                message=said % {"queue": item.queue, "reason": item.reason, "holder": item.holder or gettext("unknown")}
                + (by if strategy else ""),
                detail={
                    "queue": item.queue,
                    "reason": item.reason,
                    "holder": item.holder,
                    "strategy": strategy.value if strategy else "",
                    "rule": item.plan.rule,
                    "removed": item.removed,
                },
            )  # fmt: skip
        )
        if strategy:
            actions.append(
                RecoveryAction(
                    task_id=item.task_id,
                    task_name=item.task_name[:255],
                    strategy=strategy,
                    rule=item.plan.rule[:200],
                    # The same run runs again; never "" (a run launched from this one would take it for its RESUME).
                    new_task_id="" if item.removed else item.task_id,
                    message=_orphan_message(item),
                )
            )
    AuditEntry.objects.bulk_create(entries)
    if actions:
        RecoveryAction.objects.bulk_create(actions)
        RecoveryAction.objects.filter(
            task_id__in=[a.task_id for a in actions if a.strategy != Strategy.MANUAL],
            strategy=Strategy.MANUAL,
            resolved_at=None,
        ).update(resolved_at=timezone.now())
    removed = [item for item in restored if item.removed]
    if removed:
        _orphan_record_failed(removed)
    return len(entries)
