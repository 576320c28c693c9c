"""Runs: launch, list (keyset cursors), count, detail, cancel, terminate, re-run, bulk re-run, delete."""

from dataclasses import replace
from urllib.parse import urlencode

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response

from taskcenter import catalogue, permissions
from taskcenter.api import serializers as s
from taskcenter.api.base import ApiView, parse, problems, query
from taskcenter.api.idempotency import HEADER, idempotent
from taskcenter.api.permissions import CanView, require
from taskcenter.broker import BROKER_ERRORS
from taskcenter.models import Run, RunSource
from taskcenter.progress import progress_of
from taskcenter.selectors.recovery import checkpoints_for_run, recovery_actions_for_run
from taskcenter.selectors.runs import RunFilters, run_by_task_id, run_lineage, runs_count, runs_for_retry, runs_page
from taskcenter.services import control
from taskcenter.services.launch import run_launch

CONTROL_REFUSED = "You need the 'cancel, terminate and retry runs' permission."
LAUNCH_REFUSED = "You may not launch any task."

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    HEADER, OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="A key of your choice: a retry with the same key within 24 h returns the first answer.",
)  # fmt: skip


def _run_or_404(task_id: str) -> Run:
    run = run_by_task_id(task_id)
    if run is None:
        raise NotFound(f"No run with task id {task_id!r}.")
    return run


def _require_launch(user, task_name: str) -> None:
    if not permissions.can_launch(user, task_name):
        raise PermissionDenied(f"You may not launch {task_name}.")


def _filters(data: dict) -> RunFilters:
    return RunFilters(
        state=data.get("state", ""),
        task_name=data.get("task", ""),
        queue=data.get("queue", ""),
        worker=data.get("worker", ""),
        periodic_task_name=data.get("schedule", ""),
        launched_by=data.get("launched_by", ""),
        source=data.get("source", ""),
        task_id=data.get("task_id", "").strip(),
        text=data.get("search", ""),
        created_from=data.get("created_from"),
        created_to=data.get("created_to"),
    )


def run_detail_data(run: Run) -> dict:
    """A run with its progress, attempts, lineage, checkpoints and recovery actions."""
    try:
        progress = progress_of([run.task_id]).get(run.task_id)
    except BROKER_ERRORS:
        progress = None  # a down broker hides the progress, not the run
    detail = {
        "progress": progress.as_dict() if progress else None,
        "attempts": run.attempt_list,
        "reruns": list(run.reruns.order_by("-id").values_list("task_result_id", flat=True)[:50]),
        "lineage": run_lineage(run),
        "checkpoints": checkpoints_for_run(run.task_id),
        "recovery_actions": recovery_actions_for_run(run.task_id),
    }
    return s.RunDetailSerializer(run, context={"detail": detail}).data


class RunCollection(ApiView):
    def get_permissions(self):
        if self.request.method == "POST":
            return [require(permissions.can_launch_something, LAUNCH_REFUSED)()]
        return [CanView()]

    @extend_schema(
        operation_id="runs_list", tags=["runs"], parameters=[s.RunListQuerySerializer],
        responses={200: s.RunPageSerializer, **problems()},
    )  # fmt: skip
    def get(self, request):
        """Runs newest first, filtered; follow ``next`` (older) and ``previous`` (newer) to page."""
        data = query(s.RunListQuerySerializer, request)
        filters = replace(_filters(data), sort=data.get("sort", ""))
        page = runs_page(filters, before=data.get("before"), after=data.get("after"), page_size=data["page_size"])
        params = {k: v for k, v in request.query_params.items() if k not in ("before", "after")}

        def link(**cursor) -> str:
            return request.build_absolute_uri(request.path + "?" + urlencode({**params, **cursor}))

        return Response(
            {
                "results": s.RunSerializer(
                    page.runs, many=True, context={"retry_of_task_ids": s.retry_of_task_ids(page.runs)}
                ).data,
                "next": link(before=page.older_cursor) if page.older_cursor is not None else None,
                "previous": link(after=page.newer_cursor) if page.newer_cursor is not None else None,
                "scan_limited": page.scan_limited,
                "search_capped": page.search_capped,
            }
        )

    @extend_schema(
        operation_id="runs_launch", tags=["runs"], request=s.LaunchSerializer, parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: s.RunDetailSerializer, **problems(409, 422, 503)},
        examples=[OpenApiExample(
            "add", request_only=True,
            value={"task": "examples.add", "kwargs": {"x": 2, "y": 3}, "priority": "HIGH", "countdown": 10},
        )],
    )  # fmt: skip
    def post(self, request):
        """Launch a catalogued task (the same checks, de-duplication and audit as the launch page)."""

        def launch():
            data = parse(s.LaunchSerializer, request.data)
            entry = catalogue.get_entry(data["task"])
            if entry is None:
                raise NotFound(f"No launchable task is named {data['task']!r}.")
            _require_launch(request.user, entry.name)
            run = run_launch(
                task_name=entry.name,
                args=data.get("args"),
                kwargs=data.get("kwargs"),
                queue=data.get("queue"),
                priority=data.get("priority"),
                countdown=data.get("countdown"),
                eta=data.get("eta"),
                expires=data.get("expires", data.get("expires_at")),
                dedup_key=data.get("dedup_key"),
                launched_by=request.user,
                source=RunSource.API,
            )
            return Response(run_detail_data(run_by_task_id(run.task_id)), status=201)

        return idempotent(request, launch)


class RunCount(ApiView):
    @extend_schema(
        operation_id="runs_count", tags=["runs"], parameters=[s.RunFilterSerializer],
        responses={200: s.CountSerializer, **problems()},
    )  # fmt: skip
    def get(self, request):
        """How many runs match the filters, counting at most ``TASKCENTER_API_COUNT_LIMIT``."""
        data = query(s.RunFilterSerializer, request)
        count, capped = runs_count(_filters(data), limit=settings.TASKCENTER_API_COUNT_LIMIT)
        return Response({"count": count, "capped": capped})


class RunItem(ApiView):
    def get_permissions(self):
        if self.request.method == "DELETE":
            return [require(permissions.can_delete_run, "You need the 'delete run' permission.")()]
        return [CanView()]

    @extend_schema(operation_id="runs_detail", tags=["runs"], responses={200: s.RunDetailSerializer, **problems()})
    def get(self, request, task_id):
        """One run, with progress, attempts, re-runs, checkpoints and recovery actions."""
        return Response(run_detail_data(_run_or_404(task_id)))

    @extend_schema(operation_id="runs_delete", tags=["runs"], responses={204: None, **problems(409)})
    def delete(self, request, task_id):
        """Delete a finished run's record (needs the 'delete run' permission)."""
        control.run_delete(run=_run_or_404(task_id), actor=request.user)
        return Response(status=204)


class RunAction(ApiView):
    """Cancel (waiting) or terminate (started) a run."""

    permission_classes = [require(permissions.can_control, CONTROL_REFUSED)]
    perform = None

    def post(self, request, task_id):
        run = _run_or_404(task_id)
        self.perform(run=run, actor=request.user)
        return Response(run_detail_data(_run_or_404(task_id)))


class RunCancel(RunAction):
    perform = staticmethod(control.run_cancel)

    @extend_schema(
        operation_id="runs_cancel", tags=["runs"], request=None,
        responses={200: s.RunDetailSerializer, **problems(409, 503)},
    )  # fmt: skip
    def post(self, request, task_id):
        """Cancel a run that has not started."""
        return super().post(request, task_id)


class RunTerminate(RunAction):
    perform = staticmethod(control.run_terminate)

    @extend_schema(
        operation_id="runs_terminate", tags=["runs"], request=None,
        responses={200: s.RunDetailSerializer, **problems(409, 503)},
    )  # fmt: skip
    def post(self, request, task_id):
        """Stop a started run (``TASKCENTER_TERMINATE_SIGNAL``)."""
        return super().post(request, task_id)


class RunRetry(ApiView):
    permission_classes = [require(permissions.can_control, CONTROL_REFUSED)]

    @extend_schema(
        operation_id="runs_retry", tags=["runs"], request=s.RetrySerializer, parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: s.RunDetailSerializer, **problems(409, 422, 503)},
    )  # fmt: skip
    def post(self, request, task_id):
        """Re-run a finished run, with its own or edited arguments; the new run links to it."""

        def retry():
            data = parse(s.RetrySerializer, request.data)
            run = _run_or_404(task_id)
            _require_launch(request.user, run.task_name)
            new_run = control.run_retry(
                run=run, actor=request.user, args=data.get("args"), kwargs=data.get("kwargs"), source=RunSource.API
            )
            return Response(run_detail_data(run_by_task_id(new_run.task_id)), status=201)

        return idempotent(request, retry)


class RunBulkRetry(ApiView):
    permission_classes = [require(permissions.can_control, CONTROL_REFUSED)]

    @extend_schema(
        operation_id="runs_bulk_retry", tags=["runs"], request=s.BulkRetrySerializer,
        responses={200: s.BulkRetryResultSerializer, **problems()},
    )  # fmt: skip
    def post(self, request):
        """Re-run finished runs: those in ``task_ids``, or else all matching the filters.

        Without ``confirm`` only counts them. More than ``TASKCENTER_BULK_RETRY_LIMIT`` is refused (400).
        """
        data = parse(s.BulkRetrySerializer, request.data)
        limit = settings.TASKCENTER_BULK_RETRY_LIMIT
        runs = runs_for_retry(task_ids=data.get("task_ids") or [], filters=_filters(data), limit=limit + 1)
        if len(runs) > limit:
            from taskcenter.services.errors import InvalidInput

            raise InvalidInput(f"More than {limit} runs match; narrow the filters (TASKCENTER_BULK_RETRY_LIMIT).")
        result = {"matched": len(runs), "launched": [], "refused": [], "confirmed": data["confirm"]}
        if data["confirm"]:
            allowed = [r for r in runs if permissions.can_launch(request.user, r.task_name)]
            outcome = control.runs_retry_bulk(runs=allowed, actor=request.user, source=RunSource.API)
            result["launched"] = [r.task_id for r in outcome.launched]
            result["refused"] = [{"task_id": r.task_id, "reason": reason} for r, reason in outcome.refused] + [
                {"task_id": r.task_id, "reason": f"You may not launch {r.task_name}."} for r in runs if r not in allowed
            ]
        return Response(result)
