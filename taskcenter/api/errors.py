"""The API's one exception handler: every error as an RFC 9457 problem details document.

A body is ``{"type", "title", "status", "detail", "errors"}`` with the media type
``application/problem+json``; ``errors`` maps a field (``non_field_errors`` for
the request as a whole) to its messages. Service errors (``ServiceError``) keep
their ``status_code``; DRF's own errors (validation, authentication, throttling,
parse errors) keep theirs and their headers (``WWW-Authenticate``, ``Retry-After``).
"""

import logging
from http import HTTPStatus

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from taskcenter.services.errors import ServiceError

logger = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"
NON_FIELD = "non_field_errors"


def problem(status: int, detail: str, *, errors: dict | None = None, headers=None, **extra) -> Response:
    """A problem details response."""
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "errors": errors or {},
        **extra,
    }
    return Response(body, status=status, headers=headers, content_type=PROBLEM_TYPE)


def problem_exception_handler(exc, context):
    """Turn a ``ServiceError`` or a DRF/Django error into problem details; let anything else raise (500)."""
    if isinstance(exc, ServiceError):
        errors = {NON_FIELD if key is None else str(key): list(msgs) for key, msgs in (exc.errors or {}).items()}
        extra = {}
        existing = getattr(exc, "existing", None)
        if existing is not None:
            extra["existing_run"] = existing.task_id
        return problem(exc.status_code, str(exc), errors=errors, **extra)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = exception_handler(exc, context)
    if response is None:
        return None
    errors = {}
    if isinstance(exc, exceptions.ValidationError):
        errors = _field_errors(exc.detail)
        detail = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items()) or "Invalid input."
    else:
        detail = str(exc.detail) if not isinstance(exc.detail, list | dict) else "Invalid request."
    headers = {name: value for name, value in response.items() if name in ("WWW-Authenticate", "Retry-After", "Allow")}
    return problem(response.status_code, detail, errors=errors, headers=headers)


def _field_errors(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail flattened to ``{"field" or "field.sub": [messages]}``."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == NON_FIELD and prefix:
                name = prefix
            flat.update(_field_errors(value, name))
        return flat
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return {prefix or NON_FIELD: [str(item) for item in detail]}
        flat = {}
        for index, item in enumerate(detail):
            flat.update(_field_errors(item, f"{prefix}[{index}]" if prefix else str(index)))
        return flat
    return {prefix or NON_FIELD: [str(detail)]}
