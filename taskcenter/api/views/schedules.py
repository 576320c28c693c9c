"""Schedules (django-celery-beat periodic tasks): list, create, change, delete, enable, disable, run now, next runs."""

import dataclasses

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from taskcenter import permissions
from taskcenter.api.base import ApiView, StrictSerializer, parse, problems, query
from taskcenter.api.permissions import CanView, require
from taskcenter.api.serializers import JSONListField, JSONObjectField, RunSerializer
from taskcenter.models import RunSource
from taskcenter.selectors.runs import run_by_task_id
from taskcenter.selectors.schedules import (
    periodic_tasks,
    schedule_describe,
    schedule_error,
    schedule_next_runs,
    schedules_overview,
)
from taskcenter.services import schedules as service

ADD_REFUSED = "You need the 'add periodic task' permission."
CHANGE_REFUSED = "You need the 'change periodic task' permission."
DELETE_REFUSED = "You need the 'delete periodic task' permission."


class ScheduleInputSerializer(StrictSerializer):
    """A schedule's definition; what each kind needs is checked by the schedules service."""

    name = serializers.CharField(max_length=200)
    task = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=service.KINDS)
    every = serializers.IntegerField(required=False, allow_null=True, help_text="interval: run every N periods")
    period = serializers.ChoiceField(choices=service.PERIODS, required=False)
    cron = serializers.CharField(required=False, allow_blank=True, help_text='crontab: e.g. "0 2 * * *"')
    timezone = serializers.CharField(required=False, allow_blank=True, help_text="crontab: e.g. Europe/Berlin")
    clocked_time = serializers.DateTimeField(required=False, allow_null=True, help_text="clocked: the one-off time")
    solar_event = serializers.CharField(required=False, allow_blank=True, help_text="solar: e.g. sunrise")
    latitude = serializers.FloatField(required=False, allow_null=True)
    longitude = serializers.FloatField(required=False, allow_null=True)
    args = JSONListField(required=False)
    kwargs = JSONObjectField(required=False)
    queue = serializers.CharField(required=False, allow_blank=True)
    priority = serializers.CharField(required=False, allow_blank=True)
    expire_seconds = serializers.IntegerField(required=False, allow_null=True)
    enabled = serializers.BooleanField(required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    misfire = serializers.CharField(required=False)
    grace_seconds = serializers.IntegerField(required=False, allow_null=True)
    jitter_seconds = serializers.IntegerField(required=False)
    max_instances = serializers.IntegerField(required=False)


@extend_schema_field({"type": "string", "format": "date-time"})
class LocalDateTimeField(serializers.Field):
    """A time as ISO 8601 in its own zone (a schedule's), not converted to the site's."""

    def to_representation(self, value):
        return value.isoformat()


class FireTimeSerializer(serializers.Serializer):
    at = LocalDateTimeField(help_text="In the schedule's time zone.")
    note = serializers.CharField(help_text="SHIFTED, AMBIGUOUS, DST_DAY or empty")


class ScheduleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    task = serializers.CharField()
    enabled = serializers.BooleanField()
    description = serializers.CharField(help_text="The schedule in words.")
    timezone = serializers.CharField()
    next_run = FireTimeSerializer(allow_null=True)
    last_state = serializers.CharField(allow_null=True)
    last_task_id = serializers.CharField(allow_null=True)
    last_run_at = serializers.DateTimeField(allow_null=True)
    runs = serializers.IntegerField(help_text="Runs in the last 7 days.")
    failures = serializers.IntegerField(help_text="Failed runs in the last 7 days.")
    error = serializers.CharField()


class ScheduleDetailSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    description = serializers.CharField()
    error = serializers.CharField()
    spec = serializers.DictField(help_text="Its definition, secret arguments masked (the fields of a create).")
    next_runs = FireTimeSerializer(many=True)


class ScheduleListQuery(StrictSerializer):
    search = serializers.CharField(required=False, max_length=200)
    enabled = serializers.BooleanField(required=False, allow_null=True, default=None)
    after = serializers.CharField(required=False, max_length=200, help_text="Cursor: names after this one.")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=100)


class NextRunsQuery(StrictSerializer):
    count = serializers.IntegerField(required=False, min_value=1, max_value=100, default=10)


def _schedule_or_404(pk: int):
    task = periodic_tasks().filter(pk=pk).first()
    if task is None:
        raise NotFound(f"No schedule with id {pk}.")
    return task


def _detail(task) -> dict:
    spec = dataclasses.asdict(service.ScheduleSpec.from_periodic_task(task).masked())
    spec["clocked_time"] = spec["clocked_time"].isoformat() if spec["clocked_time"] else None
    return {
        "id": task.pk,
        "description": schedule_describe(task),
        "error": schedule_error(task),
        "spec": spec,
        "next_runs": FireTimeSerializer(schedule_next_runs(task, count=10), many=True).data,
    }


def _spec(data: dict, base: service.ScheduleSpec | None = None) -> service.ScheduleSpec:
    values = {k: v for k, v in data.items()}
    for name in ("cron", "timezone", "solar_event", "queue", "priority", "description"):
        if name in values and values[name] is None:
            values[name] = ""
    return dataclasses.replace(base, **values) if base else service.ScheduleSpec(**values)


class ScheduleCollection(ApiView):
    permission_classes = [require(permissions.can_add_schedule, ADD_REFUSED)]

    @extend_schema(
        operation_id="schedules_list", tags=["schedules"], parameters=[ScheduleListQuery],
        responses={200: ScheduleSerializer(many=True), **problems()},
    )  # fmt: skip
    def get(self, request):
        """Schedules by name; page with ``after`` (the last name seen)."""
        data = query(ScheduleListQuery, request)
        rows = schedules_overview(
            search=data.get("search", ""), enabled=data["enabled"], after=data.get("after", ""), limit=data["limit"]
        )
        out = []
        for row in rows:
            out.append(
                {
                    "id": row.task.pk,
                    "name": row.task.name,
                    "task": row.task.task,
                    "enabled": row.task.enabled,
                    "description": row.description,
                    "timezone": row.timezone,
                    "next_run": row.next_run,
                    "last_state": row.last_state,
                    "last_task_id": row.last_task_id,
                    "last_run_at": row.last_run_at,
                    "runs": row.runs,
                    "failures": row.failures,
                    "error": row.error,
                }
            )
        return Response(ScheduleSerializer(out, many=True).data)

    @extend_schema(
        operation_id="schedules_create", tags=["schedules"], request=ScheduleInputSerializer,
        responses={201: ScheduleDetailSerializer, **problems()},
        examples=[OpenApiExample("nightly", request_only=True, value={
            "name": "nightly add", "task": "examples.add", "kind": "crontab", "cron": "0 2 * * *",
            "timezone": "Europe/Berlin", "args": [1, 2],
        })],
    )  # fmt: skip
    def post(self, request):
        """Create a schedule (the same checks and audit as the schedule page)."""
        data = parse(ScheduleInputSerializer, request.data)
        task = service.schedule_save(spec=_spec(data), actor=request.user)
        return Response(_detail(_schedule_or_404(task.pk)), status=201)


class ScheduleItem(ApiView):
    def get_permissions(self):
        if self.request.method == "DELETE":
            return [require(permissions.can_delete_schedule, DELETE_REFUSED)()]
        if self.request.method in ("PATCH", "PUT"):
            return [require(permissions.can_change_schedule, CHANGE_REFUSED)()]
        return [CanView()]

    @extend_schema(
        operation_id="schedules_detail", tags=["schedules"], responses={200: ScheduleDetailSerializer, **problems()}
    )
    def get(self, request, pk):
        """A schedule's definition and its next ten run times."""
        return Response(_detail(_schedule_or_404(pk)))

    @extend_schema(
        operation_id="schedules_update", tags=["schedules"], request=ScheduleInputSerializer(partial=True),
        responses={200: ScheduleDetailSerializer, **problems()},
    )  # fmt: skip
    def patch(self, request, pk):
        """Change some fields of a schedule; the others keep their values."""
        task = _schedule_or_404(pk)
        data = parse(ScheduleInputSerializer, request.data, partial=True)
        spec = _spec(data, base=service.ScheduleSpec.from_periodic_task(task).masked())
        service.schedule_save(spec=spec, actor=request.user, existing=task)
        return Response(_detail(_schedule_or_404(pk)))

    @extend_schema(operation_id="schedules_delete", tags=["schedules"], responses={204: None, **problems()})
    def delete(self, request, pk):
        """Delete a schedule (its runs stay in the history)."""
        service.schedule_delete(periodic_task=_schedule_or_404(pk), actor=request.user)
        return Response(status=204)


class ScheduleEnable(ApiView):
    permission_classes = [require(permissions.can_change_schedule, CHANGE_REFUSED)]
    enabled = True

    @extend_schema(
        operation_id="schedules_enable", tags=["schedules"], request=None,
        responses={200: ScheduleDetailSerializer, **problems()},
    )  # fmt: skip
    def post(self, request, pk):
        """Enable the schedule."""
        service.schedules_set_enabled(periodic_tasks=[_schedule_or_404(pk)], enabled=self.enabled, actor=request.user)
        return Response(_detail(_schedule_or_404(pk)))


class ScheduleDisable(ScheduleEnable):
    enabled = False

    @extend_schema(
        operation_id="schedules_disable", tags=["schedules"], request=None,
        responses={200: ScheduleDetailSerializer, **problems()},
    )  # fmt: skip
    def post(self, request, pk):
        """Disable the schedule."""
        return super().post(request, pk)


class ScheduleRunNow(ApiView):
    permission_classes = [require(permissions.can_launch_something, "You may not launch any task.")]

    @extend_schema(
        operation_id="schedules_run_now", tags=["schedules"], request=None,
        responses={201: RunSerializer, **problems(409, 503)},
    )  # fmt: skip
    def post(self, request, pk):
        """Launch the schedule's task now, with its arguments; the run keeps the schedule's name."""
        run = service.schedule_run_now(periodic_task=_schedule_or_404(pk), actor=request.user, source=RunSource.API)
        return Response(RunSerializer(run_by_task_id(run.task_id)).data, status=201)


class ScheduleNextRuns(ApiView):
    @extend_schema(
        operation_id="schedules_next_runs", tags=["schedules"], parameters=[NextRunsQuery],
        responses={200: FireTimeSerializer(many=True), **problems()},
    )  # fmt: skip
    def get(self, request, pk):
        """The next run times, in the schedule's time zone (none when disabled)."""
        data = query(NextRunsQuery, request)
        task = _schedule_or_404(pk)
        return Response(FireTimeSerializer(schedule_next_runs(task, count=data["count"]), many=True).data)
