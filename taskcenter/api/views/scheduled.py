"""Delayed runs waiting in the scheduled set (the Scheduled page): list them, make one due now."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from taskcenter import permissions
from taskcenter.api import serializers as s
from taskcenter.api.base import ApiView, StrictSerializer, problems, query
from taskcenter.api.permissions import require
from taskcenter.api.views.runs import CONTROL_REFUSED, _run_or_404, run_detail_data
from taskcenter.selectors.scheduled import scheduled_page
from taskcenter.services import scheduled


class WaitingSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    task_name = serializers.CharField()
    queue = serializers.CharField()
    due = serializers.DateTimeField()
    state = serializers.CharField(allow_null=True, help_text="The run's state; null for a message without a run.")


class ScheduledSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="Runs waiting in all.")
    next_after = serializers.FloatField(allow_null=True, help_text="Cursor of the next page (pass as `after`).")
    runs = WaitingSerializer(many=True)


class ScheduledQuery(StrictSerializer):
    after = serializers.FloatField(required=False, min_value=-1e11, max_value=1e11)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=50)


class ScheduledList(ApiView):
    @extend_schema(
        operation_id="scheduled_list", tags=["scheduled"],
        parameters=[
            OpenApiParameter("after", float, description="Only runs due after this Unix time (a page's `next_after`)."),
            OpenApiParameter("limit", int, description="At most this many (1-500, default 50)."),
        ],
        responses={200: ScheduledSerializer, **problems(400, 503)},
    )  # fmt: skip
    def get(self, request):
        """Runs waiting for their countdown, ETA or a retry's backoff, in due order."""
        options = query(ScheduledQuery, request)
        page = scheduled_page(after=options.get("after"), limit=options["limit"])
        runs = [
            {
                "task_id": item.held.task_id,
                "task_name": item.held.task_name,
                "queue": item.held.queue,
                "due": item.held.due,
                "state": item.run.state if item.run else None,
            }
            for item in page.waiting
        ]
        return Response(ScheduledSerializer({"total": page.total, "next_after": page.next_after, "runs": runs}).data)


class RunNow(ApiView):
    permission_classes = [require(permissions.can_control, CONTROL_REFUSED)]

    @extend_schema(
        operation_id="runs_run_now", tags=["runs"], request=None,
        responses={200: s.RunDetailSerializer, **problems(403, 404, 409, 503)},
    )  # fmt: skip
    def post(self, request, task_id):
        """Make a run waiting in the scheduled set due at once (needs the task's launch permission too)."""
        run = _run_or_404(task_id)
        scheduled.scheduled_run_now(run=run, actor=request.user)
        return Response(run_detail_data(_run_or_404(task_id)))
