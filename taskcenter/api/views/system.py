"""The audit trail (read) and the health of the system."""

from urllib.parse import urlencode

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from taskcenter.api.base import ApiView, StrictSerializer, problems, query
from taskcenter.models import AuditEntry
from taskcenter.selectors.alerts import readiness_checks
from taskcenter.selectors.audit import AuditFilters, audit_page


class AuditEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    actor = serializers.SerializerMethodField()
    action = serializers.CharField()
    target = serializers.CharField()
    task_id = serializers.CharField()
    outcome = serializers.CharField()
    message = serializers.CharField()
    detail = serializers.DictField()

    def get_actor(self, entry) -> str | None:
        return entry.actor.get_username() if entry.actor_id and entry.actor else None


class AuditPageSerializer(serializers.Serializer):
    results = AuditEntrySerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="URL of the older page, or null.")


class AuditQuery(StrictSerializer):
    action = serializers.ChoiceField(choices=AuditEntry.Action.values, required=False)
    actor = serializers.CharField(required=False, max_length=150, help_text="A username.")
    target = serializers.CharField(required=False, max_length=255)
    task_id = serializers.CharField(required=False, max_length=255)
    outcome = serializers.ChoiceField(choices=AuditEntry.Outcome.values, required=False)
    at_from = serializers.DateTimeField(required=False)
    at_to = serializers.DateTimeField(required=False)
    before = serializers.IntegerField(required=False, min_value=0, help_text="Cursor: entries older than this.")
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)


class AuditList(ApiView):
    @extend_schema(
        operation_id="audit_list", tags=["audit"], parameters=[AuditQuery],
        responses={200: AuditPageSerializer, **problems()},
    )  # fmt: skip
    def get(self, request):
        """Audit entries newest first, filtered; follow ``next`` to page."""
        data = query(AuditQuery, request)
        filters = AuditFilters(
            action=data.get("action", ""),
            actor=data.get("actor", ""),
            target=data.get("target", ""),
            task_id=data.get("task_id", ""),
            outcome=data.get("outcome", ""),
            at_from=data.get("at_from"),
            at_to=data.get("at_to"),
        )
        entries, older = audit_page(filters, before=data.get("before"), page_size=data["page_size"])
        params = {k: v for k, v in request.query_params.items() if k != "before"}
        link = (
            request.build_absolute_uri(request.path + "?" + urlencode({**params, "before": older})) if older else None
        )
        return Response({"results": AuditEntrySerializer(entries, many=True).data, "next": link})


class CheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    message = serializers.CharField()


class HealthSerializer(serializers.Serializer):
    ready = serializers.BooleanField(help_text="Every check passed (what /readyz answers 200 for).")
    checks = serializers.DictField(child=CheckSerializer(), help_text="database, broker, workers, beat.")


class Health(ApiView):
    @extend_schema(operation_id="health", tags=["health"], responses={200: HealthSerializer, **problems()})
    def get(self, request):
        """Database, broker, workers and beat, with details, within 2 s (``/readyz`` without the details)."""
        results = readiness_checks()
        return Response(
            {
                "ready": all(r.ok for r in results),
                "checks": {r.name: {"ok": r.ok, "message": r.message} for r in results},
            }
        )
