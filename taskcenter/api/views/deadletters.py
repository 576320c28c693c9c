"""Dead letters (list, detail, replay, discard) and recovery strategies applied to a run."""

from urllib.parse import urlencode

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response

from taskcenter import permissions
from taskcenter.api.base import ApiView, StrictSerializer, parse, problems, query
from taskcenter.api.idempotency import idempotent
from taskcenter.api.permissions import require
from taskcenter.api.serializers import JSONListField, JSONObjectField, RecoveryActionSerializer, RunDetailSerializer
from taskcenter.api.views.runs import CONTROL_REFUSED, IDEMPOTENCY_PARAMETER, _run_or_404, run_detail_data
from taskcenter.models import DeadLetter, RunSource
from taskcenter.selectors.deadletters import DeadLetterFilters, deadletter_by_id, deadletters_page
from taskcenter.selectors.runs import run_by_task_id
from taskcenter.services import deadletters, recovery
from taskcenter.strategies import Strategy

MANAGE_REFUSED = "You need the 'replay and discard dead letters' permission."


class DeadLetterSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    task_id = serializers.CharField()
    task_name = serializers.CharField()
    queue = serializers.CharField()
    reason = serializers.CharField()
    exception_type = serializers.CharField()
    message = serializers.CharField()
    args = serializers.JSONField()
    kwargs = serializers.JSONField()
    worker = serializers.CharField()
    created_at = serializers.DateTimeField()
    resolution = serializers.CharField(help_text="Empty while open; replayed or discarded.")
    replayed_as = serializers.CharField()
    resolved_at = serializers.DateTimeField(allow_null=True)


class DeadLetterDetailSerializer(DeadLetterSerializer):
    traceback = serializers.CharField()


class DeadLetterPageSerializer(serializers.Serializer):
    results = DeadLetterSerializer(many=True)
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)


class DeadLetterQuery(StrictSerializer):
    task = serializers.CharField(required=False, max_length=255)
    reason = serializers.ChoiceField(choices=DeadLetter.Reason.values, required=False)
    exception_type = serializers.CharField(required=False, max_length=255)
    status = serializers.ChoiceField(choices=["open", "replayed", "discarded", "all"], required=False, default="open")
    created_from = serializers.DateTimeField(required=False)
    created_to = serializers.DateTimeField(required=False)
    before = serializers.IntegerField(required=False, min_value=0)
    after = serializers.IntegerField(required=False, min_value=0)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)

    def validate(self, data):
        if "before" in data and "after" in data:
            raise serializers.ValidationError({"after": ["Give before or after, not both."]})
        return data


class ReplaySerializer(StrictSerializer):
    args = JSONListField(required=False, help_text="Default: the letter's own arguments.")
    kwargs = JSONObjectField(required=False, help_text="Default: the letter's own keyword arguments.")


class RecoverSerializer(StrictSerializer):
    strategy = serializers.ChoiceField(choices=Strategy.values)


def _letter_or_404(pk: int) -> DeadLetter:
    letter = deadletter_by_id(pk)
    if letter is None:
        raise NotFound(f"No dead letter {pk}.")
    return letter


class DeadLetterList(ApiView):
    @extend_schema(
        operation_id="deadletters_list", tags=["dead letters"], parameters=[DeadLetterQuery],
        responses={200: DeadLetterPageSerializer, **problems()},
    )  # fmt: skip
    def get(self, request):
        """Dead letters newest first (open ones by default); follow ``next`` and ``previous`` to page."""
        data = query(DeadLetterQuery, request)
        filters = DeadLetterFilters(
            task_name=data.get("task", ""),
            reason=data.get("reason", ""),
            exception_type=data.get("exception_type", ""),
            status="" if data["status"] == "all" else data["status"],
            created_from=data.get("created_from"),
            created_to=data.get("created_to"),
        )
        page = deadletters_page(
            filters, before=data.get("before"), after=data.get("after"), page_size=data["page_size"]
        )
        params = {k: v for k, v in request.query_params.items() if k not in ("before", "after")}

        def link(**cursor) -> str:
            return request.build_absolute_uri(request.path + "?" + urlencode({**params, **cursor}))

        return Response(
            {
                "results": DeadLetterSerializer(page.letters, many=True).data,
                "next": link(before=page.older_cursor) if page.older_cursor is not None else None,
                "previous": link(after=page.newer_cursor) if page.newer_cursor is not None else None,
            }
        )


class DeadLetterItem(ApiView):
    @extend_schema(
        operation_id="deadletters_detail", tags=["dead letters"],
        responses={200: DeadLetterDetailSerializer, **problems()},
    )  # fmt: skip
    def get(self, request, pk):
        """One dead letter, with its traceback."""
        return Response(DeadLetterDetailSerializer(_letter_or_404(pk)).data)


class DeadLetterReplay(ApiView):
    permission_classes = [require(permissions.can_manage_deadletters, MANAGE_REFUSED)]

    @extend_schema(
        operation_id="deadletters_replay", tags=["dead letters"], request=ReplaySerializer,
        parameters=[IDEMPOTENCY_PARAMETER], responses={201: RunDetailSerializer, **problems(409, 422, 503)},
    )  # fmt: skip
    def post(self, request, pk):
        """Launch the letter's task again (its own or edited arguments); answers with the new run."""

        def replay():
            data = parse(ReplaySerializer, request.data)
            letter = _letter_or_404(pk)
            if not permissions.can_launch(request.user, letter.task_name):
                raise PermissionDenied(f"You may not launch {letter.task_name}.")
            run = deadletters.deadletter_replay(
                letter=letter,
                actor=request.user,
                args=data.get("args"),
                kwargs=data.get("kwargs"),
                source=RunSource.API,
            )
            return Response(run_detail_data(run_by_task_id(run.task_id)), status=201)

        return idempotent(request, replay)


class DeadLetterDiscard(ApiView):
    permission_classes = [require(permissions.can_manage_deadletters, MANAGE_REFUSED)]

    @extend_schema(
        operation_id="deadletters_discard", tags=["dead letters"], request=None,
        responses={200: DeadLetterDetailSerializer, **problems(409)},
    )  # fmt: skip
    def post(self, request, pk):
        """Mark the letter discarded: nothing is run."""
        deadletters.deadletter_discard(letter=_letter_or_404(pk), actor=request.user)
        return Response(DeadLetterDetailSerializer(_letter_or_404(pk)).data)


class RunRecover(ApiView):
    permission_classes = [require(permissions.can_control, CONTROL_REFUSED)]

    @extend_schema(
        operation_id="runs_recover", tags=["runs"], request=RecoverSerializer,
        responses={200: RecoveryActionSerializer, **problems(409, 503)},
    )  # fmt: skip
    def post(self, request, task_id):
        """Apply a recovery strategy (RETRY, RESUME, RESTART, SKIP, MANUAL) to a failed, dead-lettered or lost run."""
        data = parse(RecoverSerializer, request.data)
        run = _run_or_404(task_id)
        if not permissions.can_recover(request.user, run.task_name):
            raise PermissionDenied(f"You may not recover runs of {run.task_name}.")
        action = recovery.run_recover(run=run, strategy=data["strategy"], actor=request.user, source=RunSource.API)
        return Response(RecoveryActionSerializer(action).data)
