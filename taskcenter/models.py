"""Database models of taskcenter."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_celery_results.models import TaskResult

from taskcenter.priorities import Priority
from taskcenter.strategies import Strategy

#: State shown for a run that no worker has reported on yet.
PENDING = "PENDING"
REVOKED = "REVOKED"
#: States after which a run will not change any more.
READY_STATES = ("SUCCESS", "FAILURE", "REVOKED")
#: Final states that nothing may replace once recorded (a late revoke of a finished run changes nothing).
OUTCOME_STATES = ("SUCCESS", "FAILURE")
#: Characters of a result or an exception kept on the Run row.
OUTCOME_LENGTH = 500
#: States of a run that waits or runs.
ACTIVE_STATES = ("PENDING", "RECEIVED", "STARTED", "RETRY")
#: Every state a run can be listed under, in the order a run passes through them.
RUN_STATES = ("PENDING", "RECEIVED", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED")


class RunSource(models.TextChoices):
    WEB = "web", _("Web page")
    ADMIN = "admin", _("Admin")
    API = "api", _("API")
    CLI = "cli", _("Command line")
    SCHEDULE = "schedule", _("Schedule")
    CODE = "code", _("Application code")
    EXTERNAL = "external", _("Other client")


#: Runs a schedule sent (the others have no schedule name) and runs a worker took (the worker column
#: is empty until then). The two indexes on a run's schedule and History's index by worker hold only
#: these, so a launch from a page, the API or code writes none of them. SQLite uses a partial index
#: only for a query that repeats its condition (PostgreSQL infers it from "= name"): every query by
#: schedule or worker adds it, e.g. ``Run.objects.filter(SENT_BY_SCHEDULE, periodic_task_name=name)``.
#: The condition is ``NOT (column = '')``, not ``column > ''``: SQLite never walks an index by "not
#: equal", so it walks these by "= name", in page order, even where one schedule or one worker has
#: every run (with ``> ''`` its statistics made the two look alike, and it sorted all those runs).
SENT_BY_SCHEDULE = ~models.Q(periodic_task_name="")
TAKEN_BY_A_WORKER = ~models.Q(worker="")


class Run(models.Model):
    """One published task: who sent it, where and how, from the moment it is sent.

    django-celery-results writes no row until a worker reports on the task, so a
    run would be invisible while it waits in the queue. A Run is written when
    the task is published (or, for tasks sent by other clients, when the monitor
    sees a worker receive it). Its live state, result and times come from the
    ``TaskResult`` with the same task id, joined on ``task_id`` (no foreign-key
    constraint, since the result row appears later or never). The row also
    records its own state, times, worker, outcome and attempts (written by the
    monitor from events, by cancel, and by the result backend before it deletes
    expired results), so they survive the result row; see ``state``.

    The ``state`` column is the run's state, always: PENDING when written, then
    kept up to date in the database itself by triggers on the results table
    (migration 0020: every result a worker or the backend stores moves it, with
    the monitor's rules), by the monitor's events and by cancel. History filters
    on it through an index, with no join (see ``taskcenter.selectors.runs``).
    """

    task_result = models.OneToOneField(
        TaskResult,
        verbose_name=_("task result"),
        to_field="task_id",
        db_column="task_id",
        db_constraint=False,
        on_delete=models.DO_NOTHING,
        null=True,  # never null; nullable so that joins are LEFT OUTER JOINs
        related_name="run",
    )
    task_name = models.CharField(verbose_name=_("task name"), max_length=255)
    queue = models.CharField(verbose_name=_("queue"), max_length=200)
    priority = models.CharField(
        verbose_name=_("priority"), max_length=10, choices=Priority.choices(), default=Priority.NORMAL
    )
    args = models.JSONField(verbose_name=_("positional arguments"), default=list, blank=True)
    kwargs = models.JSONField(verbose_name=_("keyword arguments"), default=dict, blank=True)
    # Real values of secret arguments (masked in args/kwargs), sealed for re-runs; never shown.
    secrets = models.TextField(verbose_name=_("secrets"), blank=True, default="", editable=False)
    eta = models.DateTimeField(verbose_name=_("ETA"), null=True, blank=True, help_text=_("Not run before this time."))
    source = models.CharField(
        verbose_name=_("source"), max_length=10, choices=RunSource.choices, default=RunSource.CODE
    )
    # No index of its own: run_launcher_created starts with it (issue 12, launch cost).
    launched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("launched by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    periodic_task_name = models.CharField(verbose_name=_("periodic task name"), max_length=255, blank=True, default="")
    created_at = models.DateTimeField(verbose_name=_("created at"), default=timezone.now)
    expires = models.DateTimeField(
        verbose_name=_("expires"), null=True, blank=True, help_text=_("Dropped if not started by this time.")
    )

    # Lineage: a re-run points to the run it repeats; the original lists its re-runs.
    # This and the other links empty at launch (batch, workflow, cancelled_by) have partial indexes (see Meta).
    retry_of = models.ForeignKey(
        "self",
        verbose_name=_("retry of"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reruns",
        db_index=False,
    )
    # Optional de-duplication key; see services.dedup.
    dedup_key = models.CharField(verbose_name=_("de-duplication key"), max_length=255, blank=True, default="")
    # Membership of a batch or a workflow (chain, group, chord) launched together.
    batch = models.ForeignKey(
        "Batch",
        verbose_name=_("batch"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        db_index=False,
    )
    workflow = models.ForeignKey(
        "Workflow",
        verbose_name=_("workflow"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        db_index=False,
    )

    # Cancellation as asked by an operator; the worker later reports REVOKED itself.
    cancelled_at = models.DateTimeField(verbose_name=_("cancelled at"), null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("cancelled by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    cancel_reason = models.CharField(verbose_name=_("cancel reason"), max_length=200, blank=True, default="")

    # The run's own record, kept when its result row expires, is purged or is revoked late.
    recorded_state = models.CharField(verbose_name=_("state"), max_length=20, default=PENDING, db_column="state")
    recorded_started_at = models.DateTimeField(
        verbose_name=_("started at"), null=True, blank=True, db_column="started_at"
    )
    recorded_finished_at = models.DateTimeField(
        verbose_name=_("finished at"), null=True, blank=True, db_column="finished_at"
    )
    worker = models.CharField(verbose_name=_("worker"), max_length=255, blank=True, default="")
    outcome = models.TextField(
        verbose_name=_("outcome"), blank=True, default="", help_text=_("Result or exception, shortened.")
    )
    #: One dict per time a worker started the run: worker, pid, started (ISO 8601), ended (see monitor.runs).
    attempts = models.JSONField(verbose_name=_("attempts"), default=list, blank=True)
    #: The FailureGroup of a failed run (set by the monitor; see taskcenter.failures); null otherwise.
    #: Null, not "": the partial index below then holds failed runs only, and SQLite can use it for "= fp".
    failure_fingerprint = models.CharField(  # noqa: DJ001
        verbose_name=_("failure fingerprint"), max_length=40, null=True, blank=True, editable=False
    )
    #: The run whose task sent this one, and the first run of that line (Celery's ``parent_id`` and
    #: ``root_id`` headers); null for a run nobody's task sent. Recorded by the publish signal and by the
    #: monitor (``task-received``). Null, not "": the partial index holds only runs that have a parent.
    parent_task_id = models.CharField(  # noqa: DJ001
        verbose_name=_("parent task id"), max_length=255, null=True, blank=True, editable=False
    )
    root_task_id = models.CharField(  # noqa: DJ001
        verbose_name=_("root task id"), max_length=255, null=True, blank=True, editable=False
    )

    class Meta:
        verbose_name = _("run")
        verbose_name_plural = _("runs")
        ordering = ["-id"]
        permissions = [
            ("launch_any_task", "Can launch every catalogued task"),
            ("control_run", "Can cancel, terminate and retry runs"),
            ("manage_queues", "Can pause, resume and purge queues"),
            ("manage_workers", "Can resize worker pools and set rate limits"),
        ]
        indexes = [
            # History pages page through runs newest first by (created_at, id) (keyset): one index
            # per filter, so that a filtered page, a deep page or a time range is one range walk.
            models.Index(fields=["-created_at", "-id"], name="run_created"),
            models.Index(fields=["recorded_state", "-created_at", "-id"], name="run_state_created"),
            models.Index(fields=["task_name", "-created_at", "-id"], name="run_task_created"),
            models.Index(fields=["task_name", "recorded_state", "-created_at", "-id"], name="run_task_state_created"),
            models.Index(fields=["queue", "-created_at", "-id"], name="run_queue_created"),
            models.Index(
                fields=["worker", "-created_at", "-id"], name="run_worker_created", condition=TAKEN_BY_A_WORKER
            ),
            models.Index(fields=["launched_by", "-created_at", "-id"], name="run_launcher_created"),
            # A schedule's runs (schedule page, last run, counts over a window): runs a schedule sent only.
            models.Index(fields=["periodic_task_name", "-id"], name="run_schedule_id", condition=SENT_BY_SCHEDULE),
            models.Index(
                fields=["periodic_task_name", "-created_at", "-id"],
                name="run_schedule_time",
                condition=SENT_BY_SCHEDULE,
            ),
            # A failure group's runs, newest first; only failed runs are in it.
            models.Index(
                fields=["failure_fingerprint", "-id"],
                name="run_failure_id",
                condition=models.Q(failure_fingerprint__isnull=False),
            ),
            # Links that are empty when a run is launched: a partial index holds only the runs that
            # have one, so a launch writes none of them, and "= value" (and joins) still use them.
            models.Index(fields=["retry_of"], name="run_retry_of", condition=models.Q(retry_of__isnull=False)),
            models.Index(
                fields=["parent_task_id", "-id"], name="run_parent", condition=models.Q(parent_task_id__isnull=False)
            ),
            models.Index(fields=["batch"], name="run_batch", condition=models.Q(batch__isnull=False)),
            models.Index(fields=["workflow"], name="run_workflow", condition=models.Q(workflow__isnull=False)),
            models.Index(
                fields=["cancelled_by"], name="run_cancelled_by", condition=models.Q(cancelled_by__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} [{self.task_id}]"

    @property
    def task_id(self) -> str:
        return self.task_result_id

    @property
    def result_row(self) -> TaskResult | None:
        """The worker-reported result, or None while nothing was reported."""
        try:
            return self.task_result
        except TaskResult.DoesNotExist:
            return None

    @property
    def state(self) -> str:
        """The run's real state: its ``state`` column, which the database keeps true.

        Triggers copy each status a result row takes into it (a SUCCESS or FAILURE
        replaces anything, REVOKED anything but those, other states only states
        that are not final), the monitor writes its events with the same rules and
        cancel writes REVOKED; so the column equals what the result row, the
        events and cancel say together, and it survives the result row.

        One exception, for an object built before its row was written: a run
        inserted after its result (the trigger moved the stored row, not this
        object) still says PENDING here, so a PENDING run reads its result row.
        """
        if self.recorded_state == PENDING:
            result = self.result_row
            if result is not None and result.status != PENDING:
                return result.status
        return self.recorded_state

    @property
    def is_finished(self) -> bool:
        return self.state in READY_STATES

    @property
    def is_active(self) -> bool:
        """Waiting or running: can be cancelled, blocks a duplicate."""
        return self.state in ACTIVE_STATES

    @property
    def started_at(self):
        """When a worker started the run; None if it never started (e.g. cancelled before it started)."""
        result = self.result_row
        if result is not None and result.date_started is not None:
            return result.date_started
        return self.recorded_started_at

    @property
    def duration(self):
        """Run time, from start to finish; None while not finished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def wait_time(self):
        """Time from launch (or its ETA, when later) to start; None while not started."""
        started = self.started_at
        if started is None:
            return None
        ready = max(self.created_at, self.eta) if self.eta is not None else self.created_at
        return max(started - ready, timedelta(0))

    @property
    def finished_at(self):
        if self.state not in READY_STATES:
            return None
        result = self.result_row
        if result is not None and result.status == self.state and result.date_done is not None:
            return result.date_done
        return self.recorded_finished_at

    @property
    def worker_name(self) -> str:
        """The worker that ran (or runs) it, from its result or the run's own record."""
        result = self.result_row
        return (result.worker if result is not None else "") or self.worker

    @property
    def result_text(self) -> str:
        """The stored result (or exception) of a finished run; its recorded outcome when the result row is gone."""
        result = self.result_row
        if result is not None and result.status == self.state and result.result is not None:
            return result.result
        return self.outcome

    @property
    def attempt_list(self) -> list[dict]:
        """The attempts the monitor recorded, numbered, with their times as datetimes."""
        rows = []
        for number, attempt in enumerate(self.attempts or [], 1):
            if isinstance(attempt, dict):
                rows.append(
                    {
                        "number": number,
                        "worker": attempt.get("worker") or "",
                        "pid": attempt.get("pid"),
                        "started": _parse_instant(attempt.get("started")),
                        "ended": attempt.get("ended") or "",
                        "ended_at": _parse_instant(attempt.get("at")),
                        "error": attempt.get("error") or "",
                        "next_at": _parse_instant(attempt.get("next_at")),
                    }
                )
        return rows


def _parse_instant(value):
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


class DedupLock(models.Model):
    """The run that currently holds a de-duplication key.

    One row per key; a launch takes the key with an INSERT, or with a
    compare-and-swap UPDATE when the holder has finished, so two concurrent
    launches with the same key cannot both succeed.
    """

    key = models.CharField(verbose_name=_("key"), max_length=255, primary_key=True)
    task_id = models.CharField(verbose_name=_("task id"), max_length=255)
    updated_at = models.DateTimeField(verbose_name=_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("dedup lock")
        verbose_name_plural = _("dedup locks")

    def __str__(self) -> str:
        return f"{self.key} -> {self.task_id}"


class Batch(models.Model):
    """Items launched as one Celery group, one task per slice of ``batch_size`` items."""

    task_name = models.CharField(verbose_name=_("task name"), max_length=255)
    item_count = models.PositiveIntegerField(verbose_name=_("item count"))
    batch_size = models.PositiveIntegerField(verbose_name=_("batch size"))
    group_id = models.CharField(verbose_name=_("group id"), max_length=255, blank=True, default="")
    launched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("launched by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(verbose_name=_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("batch")
        verbose_name_plural = _("batches")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Batch {self.pk} of {self.task_name} ({self.item_count} items)"


class Workflow(models.Model):
    """A chain, group or chord of catalogued tasks launched together.

    ``stages`` lists the task ids stage by stage: every task of a stage runs
    after all tasks of the stage before (chain: one task per stage; group: one
    stage; chord: the group, then the callback).
    """

    class Kind(models.TextChoices):
        CHAIN = "chain", _("Chain")
        GROUP = "group", _("Group")
        CHORD = "chord", _("Chord")

    kind = models.CharField(verbose_name=_("kind"), max_length=10, choices=Kind.choices)
    stages = models.JSONField(verbose_name=_("stages"), default=list)
    launched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("launched by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(verbose_name=_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("workflow")
        verbose_name_plural = _("workflows")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.pk}"


class QueueState(models.Model):
    """Operator settings of a queue that must outlive pages and worker restarts."""

    name = models.CharField(verbose_name=_("name"), max_length=200, primary_key=True)
    paused = models.BooleanField(verbose_name=_("paused"), default=False)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("changed by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    changed_at = models.DateTimeField(verbose_name=_("changed at"), auto_now=True)

    class Meta:
        verbose_name = _("queue state")
        verbose_name_plural = _("queue states")

    def __str__(self) -> str:
        return f"{self.name} ({'paused' if self.paused else 'consuming'})"


class TaskRateLimit(models.Model):
    """A rate limit per task type, applied to every worker and re-applied when one starts."""

    task_name = models.CharField(verbose_name=_("task name"), max_length=255, primary_key=True)
    rate = models.CharField(
        verbose_name=_("rate"), max_length=20, help_text=_('e.g. "10/s", "100/m", "1000/h"; empty removes the limit.')
    )
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("changed by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    changed_at = models.DateTimeField(verbose_name=_("changed at"), auto_now=True)

    class Meta:
        verbose_name = _("task rate limit")
        verbose_name_plural = _("task rate limits")

    def __str__(self) -> str:
        return f"{self.task_name}: {self.rate}"


class AuditEntry(models.Model):
    """Who did what, when, to which target, and how it ended."""

    class Action(models.TextChoices):
        LAUNCH = "launch", _("Launch")
        BATCH = "batch", _("Batch launch")
        WORKFLOW = "workflow", _("Workflow launch")
        CANCEL = "cancel", _("Cancel")
        TERMINATE = "terminate", _("Terminate")
        RETRY = "retry", _("Retry")
        PURGE = "purge", _("Purge queue")
        PAUSE = "pause", _("Pause queue")
        RESUME = "resume", _("Resume queue")
        POOL_GROW = "pool_grow", _("Grow pool")
        POOL_SHRINK = "pool_shrink", _("Shrink pool")
        POOL_RESTART = "pool_restart", _("Restart pool")
        AUTOSCALE = "autoscale", _("Set autoscale")
        WORKER_QUEUE_ADD = "worker_queue_add", _("Consume a queue on a worker")
        WORKER_QUEUE_CANCEL = "worker_queue_cancel", _("Stop consuming a queue on a worker")
        TIME_LIMIT = "time_limit", _("Set time limits")
        RATE_LIMIT = "rate_limit", _("Set rate limit")
        SCHEDULE_CREATE = "schedule_create", _("Create schedule")
        SCHEDULE_UPDATE = "schedule_update", _("Change schedule")
        SCHEDULE_DELETE = "schedule_delete", _("Delete schedule")
        SCHEDULE_ENABLE = "schedule_enable", _("Enable schedule")
        SCHEDULE_DISABLE = "schedule_disable", _("Disable schedule")
        SCHEDULE_DUPLICATE = "schedule_duplicate", _("Duplicate schedule")
        SCHEDULE_RUN_NOW = "schedule_run_now", _("Run schedule now")
        SCHEDULE_SKIP = "schedule_skip", _("Skip a due run")
        SCHEDULE_ERROR = "schedule_error", _("Schedule in error")
        CHANNEL_CREATE = "channel_create", _("Create notification channel")
        CHANNEL_UPDATE = "channel_update", _("Change notification channel")
        CHANNEL_DELETE = "channel_delete", _("Delete notification channel")
        CHANNEL_TEST = "channel_test", _("Test notification channel")
        RULE_CREATE = "rule_create", _("Create notification rule")
        RULE_UPDATE = "rule_update", _("Change notification rule")
        RULE_DELETE = "rule_delete", _("Delete notification rule")
        DEADLETTER_REPLAY = "deadletter_replay", _("Replay dead letter")
        DEADLETTER_DISCARD = "deadletter_discard", _("Discard dead letter")
        FAILURES_RETRY = "failures_retry", _("Retry a failure group")
        FAILURES_STATUS = "failures_status", _("Resolve or ignore a failure group")
        RETRY_POLICY = "retry_policy", _("Change retry policy")
        RETENTION_CLEANUP = "retention_cleanup", _("Retention cleanup")
        RECOVERY_APPLY = "recovery_apply", _("Apply a recovery strategy")
        RECOVERY_POLICY = "recovery_policy", _("Set a recovery strategy")
        RUN_RECOVER = "run_recover", _("Give back a lost run's message")
        FAILURES_RECOVER = "failures_recover", _("Apply a strategy to a failure group")
        FAILURES_DEADLETTER = "failures_deadletter", _("Dead-letter a failure group")
        RUN_NOW = "run_now", _("Run a delayed run now")
        TOKEN_CREATE = "token_create", _("Create an API token")
        TOKEN_REVOKE = "token_revoke", _("Revoke an API token")
        RUN_DELETE = "run_delete", _("Delete a run's record")

    class Outcome(models.TextChoices):
        OK = "ok", _("Done")
        REFUSED = "refused", _("Refused")
        ERROR = "error", _("Failed")

    at = models.DateTimeField(verbose_name=_("at"), default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("actor"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    action = models.CharField(verbose_name=_("action"), max_length=20, choices=Action.choices)
    target = models.CharField(
        verbose_name=_("target"), max_length=255, help_text=_("Task id, queue, worker or task name.")
    )
    task_id = models.CharField(verbose_name=_("task id"), max_length=255, blank=True, default="")
    outcome = models.CharField(verbose_name=_("outcome"), max_length=10, choices=Outcome.choices, default=Outcome.OK)
    message = models.TextField(verbose_name=_("message"), blank=True, default="")
    detail = models.JSONField(verbose_name=_("detail"), default=dict, blank=True)

    class Meta:
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit entries")
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["task_id"], name="audit_task_id"),
            models.Index(fields=["action", "-id"], name="audit_action_id"),
            models.Index(fields=["at"], name="audit_at"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target} {self.outcome}"


class SchedulePolicy(models.Model):
    """taskcenter's policy for one periodic task: misfires, jitter, overlapping runs.

    A periodic task without a policy row behaves as with the defaults below.
    """

    class Misfire(models.TextChoices):
        RUN_ONCE = "run_once", _("Run once (coalesce missed runs)")
        SKIP = "skip", _("Skip missed runs")

    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        verbose_name=_("periodic task"),
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="taskcenter_policy",
    )
    misfire = models.CharField(
        verbose_name=_("misfire"), max_length=10, choices=Misfire.choices, default=Misfire.RUN_ONCE
    )
    grace_seconds = models.PositiveIntegerField(
        verbose_name=_("grace seconds"),
        null=True,
        blank=True,
        help_text=_("A run missed by more than this many seconds is skipped; empty: no limit."),
    )
    jitter_seconds = models.PositiveIntegerField(
        verbose_name=_("jitter seconds"), default=0, help_text=_("Delay each run by a random 0..N seconds.")
    )
    max_instances = models.PositiveIntegerField(
        verbose_name=_("max instances"),
        default=0,
        help_text=_("Skip a due run while this many runs of the schedule wait or run; 0: no limit."),
    )
    # Health, written by beat: why the schedule could not be evaluated or sent (empty: fine).
    error = models.TextField(
        verbose_name=_("error"),
        blank=True,
        default="",
        help_text=_("Why beat could not evaluate or send this schedule."),
    )
    error_at = models.DateTimeField(verbose_name=_("error at"), null=True, blank=True)

    class Meta:
        verbose_name = _("schedule policy")
        verbose_name_plural = _("schedule policies")

    def __str__(self) -> str:
        return f"policy of {self.periodic_task_id}"


#: Upper bounds (seconds) of the runtime and wait-time histograms, as in Prometheus.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class TaskMinute(models.Model):
    """What happened to one task type on one queue in one minute, written by the monitor.

    Charts and percentiles read these rows (a day is 1,440 rows per task and queue)
    instead of scanning the run history. Histograms count durations per bucket of
    ``DURATION_BUCKETS`` plus one overflow bucket.
    """

    minute = models.DateTimeField(verbose_name=_("minute"))  # start of the minute, UTC
    task_name = models.CharField(verbose_name=_("task name"), max_length=255)
    queue = models.CharField(verbose_name=_("queue"), max_length=200)
    sent = models.PositiveIntegerField(verbose_name=_("sent"), default=0)
    started = models.PositiveIntegerField(verbose_name=_("started"), default=0)
    succeeded = models.PositiveIntegerField(verbose_name=_("succeeded"), default=0)
    failed = models.PositiveIntegerField(verbose_name=_("failed"), default=0)
    retried = models.PositiveIntegerField(verbose_name=_("retried"), default=0)
    revoked = models.PositiveIntegerField(verbose_name=_("revoked"), default=0)
    runtime_sum = models.FloatField(verbose_name=_("runtime sum"), default=0)
    runtime_buckets = models.JSONField(verbose_name=_("runtime buckets"), default=list)
    wait_sum = models.FloatField(verbose_name=_("wait sum"), default=0)
    wait_buckets = models.JSONField(verbose_name=_("wait buckets"), default=list)

    class Meta:
        verbose_name = _("task minute")
        verbose_name_plural = _("task minutes")
        constraints = [
            models.UniqueConstraint(fields=["minute", "task_name", "queue"], name="taskminute_unique"),
        ]
        indexes = [models.Index(fields=["minute"], name="taskminute_minute")]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.task_name}@{self.queue}"


class TaskTotals(models.Model):
    """Counts since the monitor started counting, per task type and queue (Prometheus counters)."""

    task_name = models.CharField(verbose_name=_("task name"), max_length=255)
    queue = models.CharField(verbose_name=_("queue"), max_length=200)
    sent = models.PositiveBigIntegerField(verbose_name=_("sent"), default=0)
    started = models.PositiveBigIntegerField(verbose_name=_("started"), default=0)
    succeeded = models.PositiveBigIntegerField(verbose_name=_("succeeded"), default=0)
    failed = models.PositiveBigIntegerField(verbose_name=_("failed"), default=0)
    retried = models.PositiveBigIntegerField(verbose_name=_("retried"), default=0)
    revoked = models.PositiveBigIntegerField(verbose_name=_("revoked"), default=0)
    runtime_sum = models.FloatField(verbose_name=_("runtime sum"), default=0)
    runtime_buckets = models.JSONField(verbose_name=_("runtime buckets"), default=list)
    wait_sum = models.FloatField(verbose_name=_("wait sum"), default=0)
    wait_buckets = models.JSONField(verbose_name=_("wait buckets"), default=list)

    class Meta:
        verbose_name = _("task totals")
        verbose_name_plural = _("task totals")
        constraints = [models.UniqueConstraint(fields=["task_name", "queue"], name="tasktotals_unique")]

    def __str__(self) -> str:
        return f"{self.task_name}@{self.queue}"


class QueueSample(models.Model):
    """Depth and oldest-message age of a queue, sampled by the monitor (for charts)."""

    at = models.DateTimeField(verbose_name=_("at"))
    queue = models.CharField(verbose_name=_("queue"), max_length=200)
    depth = models.PositiveIntegerField(verbose_name=_("depth"))
    oldest_age = models.FloatField(verbose_name=_("oldest age"), null=True, blank=True)

    class Meta:
        verbose_name = _("queue sample")
        verbose_name_plural = _("queue samples")
        indexes = [models.Index(fields=["at"], name="queuesample_at")]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.queue}={self.depth}"


class NotificationChannel(models.Model):
    """Where alert notifications go: a signed webhook or e-mail addresses (see services.notifications)."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook", _("Webhook")
        EMAIL = "email", _("E-mail")

    name = models.CharField(verbose_name=_("name"), max_length=100, unique=True)
    kind = models.CharField(verbose_name=_("kind"), max_length=10, choices=Kind.choices)
    url = models.URLField(
        verbose_name=_("URL"),
        max_length=500,
        blank=True,
        default="",
        help_text=_("Webhook: the http(s) URL to POST to."),
    )
    addresses = models.TextField(
        verbose_name=_("addresses"), blank=True, default="", help_text=_("E-mail: recipients, one per line.")
    )
    #: Webhook HMAC key; never shown after it is saved.
    secret = models.CharField(verbose_name=_("secret"), max_length=200, blank=True, default="")
    enabled = models.BooleanField(verbose_name=_("enabled"), default=True)
    created_at = models.DateTimeField(verbose_name=_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("notification channel")
        verbose_name_plural = _("notification channels")
        ordering = ["name"]
        permissions = [("manage_notifications", "Can add, change, delete and test notification channels and rules")]

    def __str__(self) -> str:
        return self.name

    @property
    def target(self) -> str:
        """Where it sends, for pages (never the secret)."""
        return self.url if self.kind == self.Kind.WEBHOOK else ", ".join(self.address_list)

    @property
    def address_list(self) -> list[str]:
        return [line.strip() for line in self.addresses.splitlines() if line.strip()]


class NotificationRule(models.Model):
    """Send an alert's firing (and, if asked, its resolving) to a channel; ``*`` matches every alert."""

    alert_name = models.CharField(
        verbose_name=_("alert name"),
        max_length=100,
        help_text=_("An alert name of the Alerts page, or * for every alert."),
    )
    channel = models.ForeignKey(
        NotificationChannel, verbose_name=_("channel"), on_delete=models.CASCADE, related_name="rules"
    )
    notify_on_resolve = models.BooleanField(verbose_name=_("notify on resolve"), default=True)
    enabled = models.BooleanField(verbose_name=_("enabled"), default=True)

    class Meta:
        verbose_name = _("notification rule")
        verbose_name_plural = _("notification rules")
        ordering = ["alert_name", "channel__name"]
        constraints = [models.UniqueConstraint(fields=["alert_name", "channel"], name="notificationrule_unique")]

    def __str__(self) -> str:
        return f"{self.alert_name} -> {self.channel_id}"


class AlertState(models.Model):
    """Whether an alert fired at the last evaluation, so only transitions notify, across restarts."""

    name = models.CharField(verbose_name=_("name"), max_length=100, unique=True)
    firing = models.BooleanField(verbose_name=_("firing"), default=False)
    since = models.DateTimeField(
        verbose_name=_("since"), default=timezone.now, help_text=_("When it last started firing or resolved.")
    )
    message = models.TextField(verbose_name=_("message"), blank=True, default="")

    class Meta:
        verbose_name = _("alert state")
        verbose_name_plural = _("alert states")

    def __str__(self) -> str:
        return f"{self.name}: {'firing' if self.firing else 'resolved'}"


class NotificationDelivery(models.Model):
    """One notification to one channel and its delivery attempts (the delivery log)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")

    class Event(models.TextChoices):
        FIRING = "firing", _("Firing")
        RESOLVED = "resolved", _("Resolved")
        TEST = "test", _("Test")

    channel = models.ForeignKey(
        NotificationChannel, verbose_name=_("channel"), on_delete=models.CASCADE, related_name="deliveries"
    )
    alert_name = models.CharField(verbose_name=_("alert name"), max_length=100)
    event = models.CharField(verbose_name=_("event"), max_length=10, choices=Event.choices)
    summary = models.TextField(verbose_name=_("summary"), blank=True, default="")
    payload = models.JSONField(verbose_name=_("payload"), default=dict)
    status = models.CharField(verbose_name=_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(verbose_name=_("attempts"), default=0)
    last_error = models.TextField(verbose_name=_("last error"), blank=True, default="")
    created_at = models.DateTimeField(verbose_name=_("created at"), default=timezone.now)
    next_attempt_at = models.DateTimeField(verbose_name=_("next attempt at"), null=True, blank=True)
    finished_at = models.DateTimeField(verbose_name=_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("notification delivery")
        verbose_name_plural = _("notification deliveries")
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
            models.Index(fields=["created_at"], name="delivery_created"),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.alert_name} -> {self.channel_id}: {self.status}"


class DeadLetter(models.Model):
    """A run that will not run again by itself: retries exhausted, rejected by a worker, or expired.

    Written by the worker on those failure paths only (see ``services.deadletters``);
    arguments are stored masked, the real values of secret arguments sealed (as on ``Run``).
    """

    class Reason(models.TextChoices):
        FAILED = "failed", _("Failed after its last retry")
        REJECTED = "rejected", _("Rejected by a worker")
        EXPIRED = "expired", _("Expired before it ran")

    class Resolution(models.TextChoices):
        OPEN = "", _("Unresolved")
        REPLAYED = "replayed", _("Replayed")
        DISCARDED = "discarded", _("Discarded")

    task_id = models.CharField(verbose_name=_("task id"), max_length=255)
    task_name = models.CharField(verbose_name=_("task name"), max_length=255, blank=True, default="")
    queue = models.CharField(verbose_name=_("queue"), max_length=200, blank=True, default="")
    reason = models.CharField(verbose_name=_("reason"), max_length=10, choices=Reason.choices)
    exception_type = models.CharField(verbose_name=_("exception type"), max_length=255, blank=True, default="")
    message = models.TextField(verbose_name=_("message"), blank=True, default="")
    traceback = models.TextField(verbose_name=_("traceback"), blank=True, default="")
    args = models.JSONField(verbose_name=_("positional arguments"), default=list, blank=True)
    kwargs = models.JSONField(verbose_name=_("keyword arguments"), default=dict, blank=True)
    # Real values of secret arguments (masked in args/kwargs), sealed as on Run; never shown.
    secrets = models.TextField(verbose_name=_("secrets"), blank=True, default="", editable=False)
    worker = models.CharField(verbose_name=_("worker"), max_length=255, blank=True, default="")
    created_at = models.DateTimeField(verbose_name=_("created at"), default=timezone.now)

    resolution = models.CharField(
        verbose_name=_("resolution"), max_length=10, choices=Resolution.choices, blank=True, default=""
    )
    replayed_as = models.CharField(
        verbose_name=_("replayed as"), max_length=255, blank=True, default="", help_text=_("Task id of the replay.")
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("resolved by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    resolved_at = models.DateTimeField(verbose_name=_("resolved at"), null=True, blank=True)

    class Meta:
        verbose_name = _("dead letter")
        verbose_name_plural = _("dead letters")
        ordering = ["-id"]
        permissions = [("manage_deadletters", "Can replay and discard dead letters")]
        indexes = [
            # The page lists newest first by id (keyset), filtered by one of these.
            models.Index(fields=["reason", "-id"], name="deadletter_reason_id"),
            models.Index(fields=["task_name", "-id"], name="deadletter_task_id_desc"),
            models.Index(fields=["exception_type", "-id"], name="deadletter_exc_id"),
            models.Index(fields=["resolution", "-id"], name="deadletter_resolution_id"),
            models.Index(fields=["created_at"], name="deadletter_created_at"),
            models.Index(fields=["task_id"], name="deadletter_task_id"),
            # Unresolved letters per reason and task (metrics) from the index alone, reading open letters only.
            models.Index(fields=["resolution", "reason", "task_name"], name="deadletter_open_counts"),
            # A time range is listed in (created_at, id) order; with a task or exception type, walk only theirs.
            models.Index(fields=["task_name", "created_at"], name="deadletter_task_created"),
            models.Index(fields=["exception_type", "created_at"], name="deadletter_exc_created"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} [{self.task_id}] {self.reason}"


class FailureGroup(models.Model):
    """Failures of one task with the same exception type raised at the same place (see taskcenter.failures).

    Written by the monitor from task-failed events, in its batch flush; a failed
    run names its group in ``Run.failure_fingerprint``.
    """

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        RESOLVED = "resolved", _("Resolved")  # opens again when it fails again
        IGNORED = "ignored", _("Ignored")  # stays ignored; still counted

    fingerprint = models.CharField(verbose_name=_("fingerprint"), max_length=40, unique=True)
    task_name = models.CharField(verbose_name=_("task name"), max_length=255)
    exception_type = models.CharField(verbose_name=_("exception type"), max_length=255)
    location = models.CharField(
        verbose_name=_("location"),
        max_length=500,
        blank=True,
        default="",
        help_text=_("Innermost frames: file:function."),
    )
    count = models.PositiveBigIntegerField(verbose_name=_("count"), default=0)
    first_seen = models.DateTimeField(verbose_name=_("first seen"))
    last_seen = models.DateTimeField(verbose_name=_("last seen"))
    sample_task_id = models.CharField(verbose_name=_("sample task id"), max_length=255, blank=True, default="")
    sample_exception = models.TextField(verbose_name=_("sample exception"), blank=True, default="")
    sample_traceback = models.TextField(verbose_name=_("sample traceback"), blank=True, default="")
    status = models.CharField(verbose_name=_("status"), max_length=10, choices=Status.choices, default=Status.OPEN)
    status_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("status changed by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    status_changed_at = models.DateTimeField(verbose_name=_("status changed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("failure group")
        verbose_name_plural = _("failure groups")
        ordering = ["-last_seen", "-id"]
        indexes = [
            models.Index(fields=["-last_seen", "-id"], name="failuregroup_last_seen"),
            models.Index(fields=["task_name", "-last_seen"], name="failuregroup_task"),
            models.Index(fields=["exception_type", "-last_seen"], name="failuregroup_type"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name}: {self.exception_type} ({self.count})"


class RetryPolicyOverride(models.Model):
    """An operator's retry policy for one catalogued task, replacing the one in its code.

    ``policy`` holds ``RetryPolicy.as_json()``; the service that saves it also copies it
    to Redis, where workers read it (see ``taskcenter.retry_policy``).
    """

    task_name = models.CharField(verbose_name=_("task name"), max_length=255, primary_key=True)
    policy = models.JSONField(verbose_name=_("policy"))
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("changed by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    changed_at = models.DateTimeField(verbose_name=_("changed at"), auto_now=True)

    class Meta:
        verbose_name = _("retry policy override")
        verbose_name_plural = _("retry policy overrides")
        default_permissions = ()
        permissions = [("change_retry_policy", "Can change the retry policy of tasks")]

    def __str__(self) -> str:
        return f"retry policy of {self.task_name}"


class Checkpoint(models.Model):
    """The state a run saved to continue from (see ``taskcenter.checkpoints``).

    ``root_task_id`` is the first run of a lineage: a run launched with RESUME
    saves under its predecessor's root, so it (and a later resume) finds the
    last checkpoint of the whole lineage. ``checksum`` is the SHA-256 of the
    canonical JSON of ``state``, verified on every read.
    """

    task_id = models.CharField(verbose_name=_("task id"), max_length=255, help_text=_("The run that saved it."))
    root_task_id = models.CharField(
        verbose_name=_("root task id"), max_length=255, help_text=_("The first run of its lineage.")
    )
    sequence = models.PositiveIntegerField(
        verbose_name=_("sequence"), default=1, help_text=_("1 for the run's first checkpoint, then 2...")
    )
    state = models.JSONField(verbose_name=_("state"), default=dict, blank=True)
    progress = models.CharField(verbose_name=_("progress"), max_length=200, blank=True, default="")
    checksum = models.CharField(verbose_name=_("checksum"), max_length=64)
    created_at = models.DateTimeField(verbose_name=_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("checkpoint")
        verbose_name_plural = _("checkpoints")
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["root_task_id", "-id"], name="checkpoint_root_id"),
            models.Index(fields=["task_id", "-id"], name="checkpoint_task_id"),
            models.Index(fields=["created_at"], name="checkpoint_created_at"),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} #{self.sequence}"


class RecoveryPolicy(models.Model):
    """An operator's choice of recovery strategy for a task type, over the default declared in code."""

    task_name = models.CharField(verbose_name=_("task name"), max_length=255, unique=True)
    strategy = models.CharField(verbose_name=_("strategy"), max_length=10, choices=Strategy.choices)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("changed by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    changed_at = models.DateTimeField(verbose_name=_("changed at"), default=timezone.now)

    class Meta:
        verbose_name = _("recovery policy")
        verbose_name_plural = _("recovery policies")
        ordering = ["task_name"]
        permissions = [("manage_recovery", "Can set the recovery strategy of task types")]

    def __str__(self) -> str:
        return f"{self.task_name}: {self.strategy}"


class RecoveryAction(models.Model):
    """A recovery strategy applied to a run: by whom (``actor``) or by which rule, and the run it launched."""

    task_id = models.CharField(
        verbose_name=_("task id"), max_length=255, help_text=_("The run the strategy was applied to.")
    )
    task_name = models.CharField(verbose_name=_("task name"), max_length=255, blank=True, default="")
    strategy = models.CharField(verbose_name=_("strategy"), max_length=10, choices=Strategy.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("actor"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    rule = models.CharField(
        verbose_name=_("rule"),
        max_length=200,
        blank=True,
        default="",
        help_text=_("Empty when an operator applied it."),
    )
    new_task_id = models.CharField(
        verbose_name=_("new task id"), max_length=255, blank=True, default="", help_text=_("The run it launched.")
    )
    message = models.TextField(verbose_name=_("message"), blank=True, default="")
    created_at = models.DateTimeField(verbose_name=_("created at"), default=timezone.now)
    #: Set on a MANUAL action once another strategy is applied to its run.
    resolved_at = models.DateTimeField(verbose_name=_("resolved at"), null=True, blank=True)

    class Meta:
        verbose_name = _("recovery action")
        verbose_name_plural = _("recovery actions")
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["task_id", "-id"], name="recoveryaction_task_id"),
            models.Index(fields=["new_task_id"], name="recoveryaction_new_task_id"),
            models.Index(fields=["strategy", "resolved_at", "-id"], name="recoveryaction_attention"),
        ]

    def __str__(self) -> str:
        return f"{self.strategy} on {self.task_id}"


class ApiToken(models.Model):
    """A personal API token: its secret is shown once and only its SHA-256 hash is stored.

    A token acts with its user's permissions; ``prefix`` (the start of the secret)
    lets the user tell tokens apart on the tokens page.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(verbose_name=_("name"), max_length=100)
    prefix = models.CharField(
        verbose_name=_("prefix"), max_length=16, help_text=_("The start of the token, for display.")
    )
    key_hash = models.CharField(verbose_name=_("key hash"), max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(verbose_name=_("created at"), default=timezone.now)
    expires_at = models.DateTimeField(verbose_name=_("expires at"), null=True, blank=True)
    last_used_at = models.DateTimeField(verbose_name=_("last used at"), null=True, blank=True)
    revoked_at = models.DateTimeField(verbose_name=_("revoked at"), null=True, blank=True)

    class Meta:
        verbose_name = _("api token")
        verbose_name_plural = _("api tokens")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())


class IdempotentRequest(models.Model):
    """The first answer to an API request sent with an ``Idempotency-Key`` header.

    A retry with the same key by the same user within a day gets this answer again
    instead of launching twice. ``response_status`` is null while the first request runs.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="+"
    )
    key = models.CharField(verbose_name=_("key"), max_length=255)
    fingerprint = models.CharField(
        verbose_name=_("fingerprint"), max_length=64, help_text=_("SHA-256 of the method, path and body.")
    )
    response_status = models.PositiveSmallIntegerField(verbose_name=_("response status"), null=True, blank=True)
    response_body = models.JSONField(verbose_name=_("response body"), null=True, blank=True)
    created_at = models.DateTimeField(verbose_name=_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("idempotent request")
        verbose_name_plural = _("idempotent requests")
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_user_key")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key}"


class DeadLetterTotal(models.Model):
    """Dead letters ever kept, per reason and task: a counter for metrics that deleting old letters does not lower.

    Incremented in the transaction that writes each letter (``services.deadletters``),
    so /metrics reads a handful of rows instead of counting the letters.
    """

    reason = models.CharField(verbose_name=_("reason"), max_length=10)
    task_name = models.CharField(verbose_name=_("task name"), max_length=255)
    total = models.PositiveBigIntegerField(verbose_name=_("total"), default=0)

    class Meta:
        verbose_name = _("dead letter total")
        verbose_name_plural = _("dead letter totals")
        default_permissions = ()
        constraints = [models.UniqueConstraint(fields=["reason", "task_name"], name="deadlettertotal_reason_task")]

    def __str__(self) -> str:
        return f"{self.reason} {self.task_name}: {self.total}"


class SavedFilter(models.Model):
    """A History filter its user named, listed on History to open again (each user sees their own)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="+"
    )
    name = models.CharField(verbose_name=_("name"), max_length=100)
    #: History's query string without page cursors, e.g. ``task_name=process&state=FAILURE``.
    query = models.CharField(verbose_name=_("query"), max_length=2000)
    created_at = models.DateTimeField(verbose_name=_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("saved filter")
        verbose_name_plural = _("saved filters")
        default_permissions = ()
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="savedfilter_user_name")]

    def __str__(self) -> str:
        return self.name
