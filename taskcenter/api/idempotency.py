"""``Idempotency-Key``: a client retrying a request (after a timeout, say) never launches twice.

The first request with a key stores its successful answer; the same user sending
the same key within ``WINDOW`` gets that answer again (with ``Idempotent-Replayed:
true``) and nothing is done. A refused or failed request stores nothing, so a
retry after a 4xx or 503 really tries again. The same key with another request
body is refused (422); a retry while the first is still running gets 409.
"""

import hashlib
import json
from datetime import timedelta

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.response import Response

from taskcenter.models import IdempotentRequest
from taskcenter.services.errors import Conflict, InvalidInput

from .errors import problem

HEADER = "Idempotency-Key"
WINDOW = timedelta(hours=24)


def idempotent(request, perform) -> Response:
    """Answer ``perform()`` once per (user, Idempotency-Key); replay the stored answer for a repeat."""
    key = request.headers.get(HEADER)
    if key is None:
        return perform()
    if not key or len(key) > 255 or not key.isprintable():
        raise InvalidInput(errors={HEADER: ["An Idempotency-Key is 1 to 255 printable characters."]})
    body = json.dumps(request.data, sort_keys=True, cls=DjangoJSONEncoder, default=str)
    fingerprint = hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()
    cutoff = timezone.now() - WINDOW
    IdempotentRequest.objects.filter(created_at__lt=cutoff).delete()
    try:
        with transaction.atomic():
            record = IdempotentRequest.objects.create(user=request.user, key=key, fingerprint=fingerprint)
    except IntegrityError:
        first = IdempotentRequest.objects.filter(user=request.user, key=key).first()
        if first is None:  # removed since (it failed): the caller may try again
            raise Conflict("A request with this Idempotency-Key was just refused; send it again.") from None
        if first.fingerprint != fingerprint:
            return problem(422, "This Idempotency-Key was used for a different request.")
        if first.response_status is None:
            raise Conflict("A request with this Idempotency-Key is still being processed.") from None
        return Response(first.response_body, status=first.response_status, headers={"Idempotent-Replayed": "true"})
    try:
        response = perform()
    except BaseException:
        record.delete()
        raise
    if 200 <= response.status_code < 300:
        record.response_status = response.status_code
        record.response_body = json.loads(json.dumps(response.data, cls=DjangoJSONEncoder))
        record.save(update_fields=["response_status", "response_body"])
    else:
        record.delete()
    return response
