"""Batches and workflows: launch, and detail with progress."""

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response

from taskcenter import catalogue, permissions
from taskcenter.api.base import ApiView, StrictSerializer, parse, problems
from taskcenter.api.idempotency import idempotent
from taskcenter.api.permissions import CanView, require
from taskcenter.api.serializers import JSONListField, JSONObjectField
from taskcenter.api.views.runs import IDEMPOTENCY_PARAMETER, LAUNCH_REFUSED
from taskcenter.models import Batch, RunSource, Workflow
from taskcenter.priorities import Priority
from taskcenter.selectors.runs import batch_progress, workflow_graph
from taskcenter.services.batches import batch_launch
from taskcenter.services.workflows import steps_from_json, workflow_launch


class ProgressCountSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    done = serializers.IntegerField()
    failed = serializers.IntegerField()
    running = serializers.IntegerField()
    percent = serializers.IntegerField()


class RunStateSerializer(serializers.Serializer):
    task_id = serializers.CharField()
    task_name = serializers.CharField()
    state = serializers.CharField()


class BatchSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    task_name = serializers.CharField()
    item_count = serializers.IntegerField()
    batch_size = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    progress = ProgressCountSerializer()
    runs = RunStateSerializer(many=True)


class WorkflowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    created_at = serializers.DateTimeField()
    progress = ProgressCountSerializer()
    stages = serializers.ListField(child=RunStateSerializer(many=True), help_text="Runs stage by stage.")


class BatchLaunchSerializer(StrictSerializer):
    task = serializers.CharField()
    items = JSONListField(help_text="The items, split into slices of batch_size, one run per slice.")
    batch_size = serializers.IntegerField()
    kwargs = JSONObjectField(required=False, help_text="Passed to every run.")
    queue = serializers.CharField(required=False)
    priority = serializers.ChoiceField(choices=list(Priority.__members__), required=False)


STEP_SCHEMA = {
    "type": "object",
    "properties": {
        "task": {"type": "string"},
        "args": {"type": "array", "items": {}},
        "kwargs": {"type": "object", "additionalProperties": {}},
        "queue": {"type": "string"},
        "priority": {"type": "string"},
    },
    "required": ["task"],
}


@extend_schema_field(STEP_SCHEMA)
class StepField(serializers.JSONField):
    """A workflow step, checked by the workflow service (which refuses unknown keys)."""


class WorkflowLaunchSerializer(StrictSerializer):
    """Checked by the workflow service (``steps_from_json``), which also refuses unknown keys in steps."""

    kind = serializers.ChoiceField(choices=Workflow.Kind.values)
    steps = serializers.ListField(child=StepField())
    callback = StepField(required=False, allow_null=True, help_text="A chord's callback step.")


def _state(run) -> dict:
    if isinstance(run, str):  # a stage's task id whose run record is gone
        return {"task_id": run, "task_name": "", "state": "UNKNOWN"}
    return {"task_id": run.task_id, "task_name": run.task_name, "state": run.state}


def batch_data(batch: Batch) -> dict:
    view = batch_progress(batch)
    progress = view["progress"]
    return {
        "id": batch.pk,
        "task_name": batch.task_name,
        "item_count": batch.item_count,
        "batch_size": batch.batch_size,
        "created_at": batch.created_at,
        "progress": {**progress.__dict__, "percent": progress.percent},
        "runs": [_state(run) for run in view["runs"]],
    }


def workflow_data(workflow: Workflow) -> dict:
    graph = workflow_graph(workflow)
    progress = graph["progress"]
    return {
        "id": workflow.pk,
        "kind": workflow.kind,
        "created_at": workflow.created_at,
        "progress": {**progress.__dict__, "percent": progress.percent},
        "stages": [[_state(run) for run in stage] for stage in graph["stages"]],
    }


class BatchCollection(ApiView):
    permission_classes = [require(permissions.can_launch_something, LAUNCH_REFUSED)]

    @extend_schema(
        operation_id="batches_launch", tags=["batches and workflows"], request=BatchLaunchSerializer,
        parameters=[IDEMPOTENCY_PARAMETER], responses={201: BatchSerializer, **problems(409, 422, 503)},
        examples=[OpenApiExample(
            "sum", request_only=True, value={"task": "examples.sum_batch", "items": [1, 2, 3, 4, 5], "batch_size": 2}
        )],
    )  # fmt: skip
    def post(self, request):
        """Launch a task once per slice of ``batch_size`` items, as one group."""

        def launch():
            data = parse(BatchLaunchSerializer, request.data)
            entry = catalogue.get_entry(data["task"])
            if entry is None:
                raise NotFound(f"No launchable task is named {data['task']!r}.")
            if not permissions.can_launch(request.user, entry.name):
                raise PermissionDenied(f"You may not launch {entry.name}.")
            batch = batch_launch(
                task_name=entry.name,
                items=data["items"],
                batch_size=data["batch_size"],
                kwargs=data.get("kwargs"),
                queue=data.get("queue"),
                priority=data.get("priority"),
                launched_by=request.user,
                source=RunSource.API,
            )
            return Response(BatchSerializer(batch_data(batch)).data, status=201)

        return idempotent(request, launch)


class BatchItem(ApiView):
    permission_classes = [CanView]

    @extend_schema(
        operation_id="batches_detail", tags=["batches and workflows"], responses={200: BatchSerializer, **problems()}
    )
    def get(self, request, pk):
        """A batch and the progress of its runs."""
        batch = Batch.objects.filter(pk=pk).first()
        if batch is None:
            raise NotFound(f"No batch {pk}.")
        return Response(BatchSerializer(batch_data(batch)).data)


class WorkflowCollection(ApiView):
    permission_classes = [require(permissions.can_launch_something, LAUNCH_REFUSED)]

    @extend_schema(
        operation_id="workflows_launch", tags=["batches and workflows"], request=WorkflowLaunchSerializer,
        parameters=[IDEMPOTENCY_PARAMETER], responses={201: WorkflowSerializer, **problems(409, 422, 503)},
        examples=[OpenApiExample("chord", request_only=True, value={
            "kind": "chord",
            "steps": [{"task": "examples.add", "args": [1, 2]}, {"task": "examples.add", "args": [3, 4]}],
            "callback": {"task": "examples.sum_batch"},
        })],
    )  # fmt: skip
    def post(self, request):
        """Launch a chain, group or chord of catalogued tasks."""

        def launch():
            data = parse(WorkflowLaunchSerializer, request.data)
            kind, steps, callback = steps_from_json(dict(data))
            for name in {s.task for s in steps} | ({callback.task} if callback else set()):
                if catalogue.get_entry(name) is not None and not permissions.can_launch(request.user, name):
                    raise PermissionDenied(f"You may not launch {name}.")
            workflow = workflow_launch(
                kind=kind, steps=steps, callback=callback, launched_by=request.user, source=RunSource.API
            )
            return Response(WorkflowSerializer(workflow_data(workflow)).data, status=201)

        return idempotent(request, launch)


class WorkflowItem(ApiView):
    permission_classes = [CanView]

    @extend_schema(
        operation_id="workflows_detail", tags=["batches and workflows"],
        responses={200: WorkflowSerializer, **problems()},
    )  # fmt: skip
    def get(self, request, pk):
        """A workflow's runs stage by stage, and their progress."""
        workflow = Workflow.objects.filter(pk=pk).first()
        if workflow is None:
            raise NotFound(f"No workflow {pk}.")
        return Response(WorkflowSerializer(workflow_data(workflow)).data)
