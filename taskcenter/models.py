"""Database models of taskcenter."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter.priorities import Priority

#: State shown for a run that no worker has reported on yet.
PENDING = "PENDING"
#: States after which a run will not change any more.
READY_STATES = ("SUCCESS", "FAILURE", "REVOKED")
#: Every state a run can be listed under, in the order a run passes through them.
RUN_STATES = ("PENDING", "RECEIVED", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED")


class RunSource(models.TextChoices):
    WEB = "web", "Web page"
    ADMIN = "admin", "Admin"
    API = "api", "API"
    CLI = "cli", "Command line"
    SCHEDULE = "schedule", "Schedule"
    CODE = "code", "Application code"


class Run(models.Model):
    """One published task: who sent it, where and how, from the moment it is sent.

    django-celery-results writes no row until a worker reports on the task, so a
    run would be invisible while it waits in the queue. A Run is written when
    the task is published; its state, result and times come from the
    ``TaskResult`` with the same task id, joined on ``task_id`` (no foreign-key
    constraint, since the result row appears later or never). The worker writes
    nothing extra for it.
    """

    task_result = models.OneToOneField(
        TaskResult,
        to_field="task_id",
        db_column="task_id",
        db_constraint=False,
        on_delete=models.DO_NOTHING,
        null=True,  # never null; nullable so that joins are LEFT OUTER JOINs
        related_name="run",
    )
    task_name = models.CharField(max_length=255)
    queue = models.CharField(max_length=200)
    priority = models.CharField(max_length=10, choices=Priority.choices(), default=Priority.NORMAL)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    eta = models.DateTimeField(null=True, blank=True, help_text="Not run before this time.")
    source = models.CharField(max_length=10, choices=RunSource.choices, default=RunSource.CODE)
    launched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    periodic_task_name = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # History pages page through runs newest first by id (keyset).
            models.Index(fields=["task_name", "-id"], name="run_task_name_id"),
            models.Index(fields=["queue", "-id"], name="run_queue_id"),
            models.Index(fields=["created_at"], name="run_created_at"),
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
        result = self.result_row
        return result.status if result is not None else PENDING

    @property
    def started_at(self):
        result = self.result_row
        if result is None:
            return None
        return result.date_started or result.date_created

    @property
    def finished_at(self):
        result = self.result_row
        if result is None or result.status not in READY_STATES:
            return None
        return result.date_done
