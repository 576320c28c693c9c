"""What every API view shares: the audit context of a token, strict input, problem responses in the schema."""

from contextlib import ExitStack

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.views import APIView

from taskcenter.models import ApiToken
from taskcenter.services.audit import audit_context


class ApiView(APIView):
    """A view of the API: actions through a token are audited with the token's name."""

    def dispatch(self, request, *args, **kwargs):
        self._audit = ExitStack()
        with self._audit:
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authenticates, checks permissions and throttles
        token = request.auth
        if isinstance(token, ApiToken):
            self._audit.enter_context(audit_context(api_token=token.name, api_token_id=token.pk))


class StrictSerializer(serializers.Serializer):
    """A serializer that refuses fields it does not declare (a typo must not be ignored silently)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise exceptions.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


def parse(serializer_class, data, **kwargs) -> dict:
    """Validated data of ``serializer_class`` for ``data``, or a 400 problem with field errors."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def query(serializer_class, request) -> dict:
    """Validated query parameters (unknown ones refused)."""
    return parse(serializer_class, {key: request.query_params.get(key) for key in request.query_params})


Problem = inline_serializer(
    name="Problem",
    fields={
        "type": serializers.CharField(),
        "title": serializers.CharField(),
        "status": serializers.IntegerField(),
        "detail": serializers.CharField(),
        "errors": serializers.DictField(child=serializers.ListField(child=serializers.CharField())),
        "existing_run": serializers.CharField(required=False),
    },
)


def problems(*statuses: int) -> dict:
    """Schema entries for error answers: problem details for each status, and the ones every endpoint may give."""
    described = {
        400: "Invalid input (field errors in `errors`).",
        401: "No valid credentials.",
        403: "Not allowed.",
        404: "Not found.",
        405: "Method not allowed.",
        406: "No acceptable media type (the API answers JSON).",
        409: "The target's state does not allow it.",
        415: "The body is not JSON.",
        422: "The Idempotency-Key was used for a different request.",
        429: "Rate limit exceeded.",
        503: "The broker or the workers are unavailable.",
        504: "No worker answered in time.",
    }
    wanted = {400, 401, 403, 404, 405, 406, 415, 429, *statuses}
    return {
        (status, "application/problem+json"): OpenApiResponse(Problem, description=described[status])
        for status in sorted(wanted)
    }
