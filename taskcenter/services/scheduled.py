"""Act on runs that wait in the scheduled set: run one now (cancel is ``control.run_cancel``)."""

import logging

from django.utils.translation import gettext, gettext_noop

from taskcenter import permissions, scheduled_set
from taskcenter.broker import BROKER_ERRORS, broker_client, broker_down_message
from taskcenter.models import Run
from taskcenter.services.audit import Action, Outcome, audit_record
from taskcenter.services.errors import Conflict, Forbidden, Unavailable
from taskcenter.services.workers import ActionReport

logger = logging.getLogger(__name__)


class NotWaiting(Conflict):
    """The run is not waiting in the scheduled set (it was published, cancelled or never delayed)."""


def scheduled_run_now(*, run: Run, actor) -> ActionReport:
    """Publish a delayed run at once instead of at its due time; needs control and the task's launch right."""
    audit = {"actor": actor, "action": Action.RUN_NOW, "target": run.task_name, "task_id": run.task_id}
    if getattr(actor, "pk", None) and not (
        permissions.can_control(actor) and permissions.can_launch(actor, run.task_name)
    ):
        error = Forbidden(gettext("You may not control runs of %(task)s.") % {"task": run.task_name})
        audit_record(**audit, outcome=Outcome.REFUSED, message=str(error))
        raise error
    try:
        with broker_client() as client:
            moved = scheduled_set.due_now(client, run.task_id)
    except BROKER_ERRORS as exc:
        message = broker_down_message(gettext_noop("the run was not moved"))
        audit_record(**audit, outcome=Outcome.ERROR, message=message)
        raise Unavailable(message) from exc
    if not moved:
        error = NotWaiting(
            gettext("Run %(task_id)s is not waiting in the scheduled set any more.") % {"task_id": run.task_id}
        )
        audit_record(**audit, outcome=Outcome.REFUSED, message=str(error))
        raise error
    audit_record(**audit, message=gettext("Made due now; a worker publishes it within a few seconds."))
    logger.info("Run %s [%s] made due now", run.task_name, run.task_id)
    return ActionReport(
        message=gettext("%(task)s [%(task_id)s] will run within a few seconds.")
        % {"task": run.task_name, "task_id": run.task_id}
    )
