"""Shapes of the API's requests and answers (validation of content stays in the services)."""

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from taskcenter import arguments
from taskcenter.models import RUN_STATES, Run, RunSource
from taskcenter.priorities import Priority

from .base import StrictSerializer


@extend_schema_field({"type": "array", "items": {}})
class JSONListField(serializers.JSONField):
    """Positional arguments: any JSON here, checked by the launch service (so its messages are the pages')."""


@extend_schema_field({"type": "object", "additionalProperties": {}})
class JSONObjectField(serializers.JSONField):
    """Keyword arguments: any JSON here, checked by the launch service."""


class CatalogueEntrySerializer(serializers.Serializer):
    name = serializers.CharField()
    summary = serializers.CharField()
    description = serializers.CharField()
    queue = serializers.CharField(source="default_queue")
    priority = serializers.CharField()
    dedup = serializers.BooleanField()
    batch_argument = serializers.CharField(allow_null=True)
    secret = serializers.ListField(child=serializers.CharField())
    signature = serializers.CharField(source="signature_text")
    arguments_schema = serializers.SerializerMethodField()
    can_launch = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_arguments_schema(self, entry) -> dict:
        return arguments.arguments_schema(entry.signature, arguments.type_hints(entry.func))

    def get_can_launch(self, entry) -> bool:
        from taskcenter import permissions

        return permissions.can_launch(self.context["request"].user, entry.name)


def retry_of_task_ids(runs) -> dict[int, str]:
    """The task ids of the runs these runs re-run, by primary key (one query for a page)."""
    pks = {run.retry_of_id for run in runs if run.retry_of_id}
    return dict(Run.objects.filter(pk__in=pks).values_list("pk", "task_result_id")) if pks else {}


class RunSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    task_name = serializers.CharField()
    state = serializers.CharField()
    queue = serializers.CharField()
    priority = serializers.CharField()
    args = serializers.JSONField()
    kwargs = serializers.JSONField()
    eta = serializers.DateTimeField(allow_null=True)
    expires = serializers.DateTimeField(allow_null=True)
    dedup_key = serializers.CharField()
    source = serializers.CharField()
    launched_by = serializers.SerializerMethodField()
    periodic_task_name = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    runtime_seconds = serializers.SerializerMethodField()
    wait_seconds = serializers.SerializerMethodField()
    worker = serializers.CharField(source="worker_name")
    result = serializers.SerializerMethodField()
    retry_of = serializers.SerializerMethodField()
    batch = serializers.IntegerField(source="batch_id", allow_null=True)
    workflow = serializers.IntegerField(source="workflow_id", allow_null=True)
    cancelled_at = serializers.DateTimeField(allow_null=True)
    cancel_reason = serializers.CharField()
    url = serializers.SerializerMethodField()

    def get_runtime_seconds(self, run) -> float | None:
        return run.duration.total_seconds() if run.duration is not None else None

    def get_wait_seconds(self, run) -> float | None:
        return run.wait_time.total_seconds() if run.wait_time is not None else None

    def get_launched_by(self, run) -> str | None:
        return run.launched_by.get_username() if run.launched_by_id and run.launched_by else None

    def get_result(self, run) -> str | None:
        text = run.result_text if run.is_finished else ""
        return None if text in (None, "") else str(text)

    def get_retry_of(self, run) -> str | None:
        if not run.retry_of_id:
            return None
        known = self.context.get("retry_of_task_ids")  # a list page looks them up in one query
        if known is not None and run.retry_of_id in known:
            return known[run.retry_of_id]
        return Run.objects.filter(pk=run.retry_of_id).values_list("task_result_id", flat=True).first()

    def get_url(self, run) -> str:
        return reverse("api:run", args=[run.task_id])


class ProgressSerializer(serializers.Serializer):
    percent = serializers.FloatField()
    done = serializers.IntegerField(allow_null=True)
    total = serializers.IntegerField(allow_null=True)
    message = serializers.CharField()
    rate = serializers.FloatField(allow_null=True)
    eta_seconds = serializers.IntegerField(allow_null=True)
    updated_at = serializers.FloatField()


class AttemptSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    worker = serializers.CharField()
    pid = serializers.IntegerField(allow_null=True)
    started = serializers.DateTimeField(allow_null=True)
    ended = serializers.CharField()
    ended_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField()
    next_at = serializers.DateTimeField(allow_null=True)


class CheckpointSerializer(serializers.Serializer):
    sequence = serializers.IntegerField()
    progress = serializers.CharField()
    created_at = serializers.DateTimeField()
    valid = serializers.BooleanField()


class RecoveryActionSerializer(serializers.Serializer):
    strategy = serializers.CharField()
    rule = serializers.CharField()
    new_task_id = serializers.CharField()
    message = serializers.CharField()
    created_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)


class RunDetailSerializer(RunSerializer):
    """A run and what its page shows beside it (given in ``context["detail"]``)."""

    progress = ProgressSerializer(allow_null=True)
    attempts = AttemptSerializer(many=True)
    reruns = serializers.ListField(child=serializers.CharField(), help_text="Task ids of its re-runs, newest first.")
    lineage = serializers.ListField(
        child=serializers.CharField(), help_text="Task ids from the first run this one repeats to this one."
    )
    checkpoints = CheckpointSerializer(many=True)
    recovery_actions = RecoveryActionSerializer(many=True)

    def to_representation(self, run):
        data = super().to_representation(run)
        detail = self.context["detail"]
        data["progress"] = detail["progress"]
        data["attempts"] = AttemptSerializer(detail["attempts"], many=True).data
        data["reruns"] = detail["reruns"]
        data["lineage"] = detail["lineage"]
        data["checkpoints"] = CheckpointSerializer(detail["checkpoints"], many=True).data
        data["recovery_actions"] = RecoveryActionSerializer(detail["recovery_actions"], many=True).data
        return data

    def get_fields(self):
        fields = super().get_fields()
        if "detail" in self.context:  # serialising: these come from the context, not the run
            for name in ("progress", "attempts", "reruns", "lineage", "checkpoints", "recovery_actions"):
                fields.pop(name)
        return fields


class LaunchSerializer(StrictSerializer):
    task = serializers.CharField(help_text="A task name of the catalogue.")
    args = JSONListField(required=False, help_text="Positional arguments.")
    kwargs = JSONObjectField(required=False, help_text="Keyword arguments.")
    queue = serializers.CharField(required=False, help_text="Default: the task's queue.")
    priority = serializers.ChoiceField(choices=list(Priority.__members__), required=False)
    countdown = serializers.IntegerField(required=False, help_text="Start after this many seconds.")
    eta = serializers.DateTimeField(required=False, help_text="Start at this time (not with countdown).")
    expires = serializers.IntegerField(required=False, help_text="Drop it if not started within this many seconds.")
    expires_at = serializers.DateTimeField(required=False, help_text="Drop it if not started by this time.")
    dedup_key = serializers.CharField(required=False, allow_blank=True, max_length=255)

    def validate(self, data):
        if "expires" in data and "expires_at" in data:
            raise serializers.ValidationError({"expires_at": ["Give expires or expires_at, not both."]})
        return data


class RetrySerializer(StrictSerializer):
    args = JSONListField(required=False, help_text="Default: the run's own arguments.")
    kwargs = JSONObjectField(required=False, help_text="Default: the run's own keyword arguments.")


class RunFilterSerializer(StrictSerializer):
    state = serializers.ChoiceField(choices=list(RUN_STATES), required=False)
    task = serializers.CharField(required=False, max_length=255)
    queue = serializers.CharField(required=False, max_length=200)
    worker = serializers.CharField(required=False, max_length=255)
    schedule = serializers.CharField(required=False, max_length=255, help_text="A periodic task's name.")
    launched_by = serializers.CharField(required=False, max_length=150, help_text="A username.")
    created_from = serializers.DateTimeField(required=False)
    created_to = serializers.DateTimeField(required=False)
    source = serializers.ChoiceField(choices=RunSource.choices, required=False, help_text="Where it was launched from.")
    task_id = serializers.CharField(required=False, max_length=255, help_text="A task id, or the start of one.")
    search = serializers.CharField(
        required=False, max_length=200,
        help_text="Words in the arguments, result or exception (each a word or the start of one); reads the newest"
        " TASKCENTER_HISTORY_SCAN_LIMIT runs holding them.",
    )  # fmt: skip


class RunListQuerySerializer(RunFilterSerializer):
    sort = serializers.ChoiceField(
        choices=["runtime"], required=False,
        help_text="runtime: the longest-running of the newest TASKCENTER_HISTORY_SCAN_LIMIT matching runs, one page.",
    )  # fmt: skip
    before = serializers.IntegerField(required=False, min_value=0, help_text="Cursor: runs older than this.")
    after = serializers.IntegerField(required=False, min_value=0, help_text="Cursor: runs newer than this.")
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)

    def validate(self, data):
        if "before" in data and "after" in data:
            raise serializers.ValidationError({"after": ["Give before or after, not both."]})
        return data


class RunPageSerializer(serializers.Serializer):
    results = RunSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="URL of the older page, or null.")
    previous = serializers.CharField(allow_null=True, help_text="URL of the newer page, or null.")
    scan_limited = serializers.BooleanField(
        help_text="True: the filters share no index and this page stopped after TASKCENTER_HISTORY_SCAN_LIMIT runs;"
        " more may match: follow next (or previous, when paging newer) to search on from the last run looked at."
    )
    search_capped = serializers.BooleanField(
        help_text="True: more runs hold the search words than one search reads (TASKCENTER_HISTORY_SCAN_LIMIT,"
        " the newest by id); add words or filters."
    )


class CountSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    capped = serializers.BooleanField(help_text="True: at least this many (counting stopped there).")


class BulkRetrySerializer(RunFilterSerializer):
    task_ids = serializers.ListField(
        child=serializers.CharField(max_length=255), required=False, max_length=1000,
        help_text="These runs (else every finished run matching the filters).",
    )  # fmt: skip
    confirm = serializers.BooleanField(
        default=False, help_text="False: only say how many would be re-run. True: re-run them."
    )


class RefusedSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    reason = serializers.CharField()


class BulkRetryResultSerializer(serializers.Serializer):
    matched = serializers.IntegerField()
    launched = serializers.ListField(child=serializers.CharField())
    refused = RefusedSerializer(many=True)
    confirmed = serializers.BooleanField()


def bulk_retry_limit() -> int:
    return settings.TASKCENTER_BULK_RETRY_LIMIT
