"""Request checks that hold for every page and API endpoint."""

import logging

from django.http import HttpResponseBadRequest, JsonResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy

from taskcenter.zones import COOKIE_NAME, SESSION_KEY, zone_or_none

logger = logging.getLogger(__name__)

NUL = "\x00"
MESSAGE = gettext_lazy("The request contains a NUL character, which no field accepts.")


def _holds_nul(data) -> bool:
    return any(NUL in key or any(NUL in value for value in values) for key, values in data.lists())


class RefuseNulCharacters:
    """Answer 400 to a request whose path, query string, form fields or cookies hold a NUL character.

    No valid input holds one (Django's form fields refuse it too), and PostgreSQL can neither store nor
    compare text that does: the query raises ``DataError``, a 500 wherever such a value reaches the
    database (a run id in a URL, a filter in a query string, a session cookie). One check here instead
    of one in each entry point. JSON bodies are checked where they are parsed (API serializers,
    ``safe_input.check_json``).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (
            NUL in request.path
            or _holds_nul(request.GET)
            or any(NUL in key or NUL in value for key, value in request.COOKIES.items())
            or (request.method == "POST" and _holds_nul(request.POST))
        ):
            logger.info("Refused a request holding a NUL character: %s %r", request.method, request.path)
            if request.path.startswith("/api/"):
                body = {
                    "type": "about:blank",
                    "title": "Bad Request",
                    "status": 400,
                    "detail": str(MESSAGE),
                    "errors": {},
                }
                return JsonResponse(body, status=400, content_type="application/problem+json")
            return HttpResponseBadRequest(str(MESSAGE))
        return self.get_response(request)


class ActivateUserTimeZone:
    """Show and read times in the zone the user chose (session, else cookie), else the site's ``TIME_ZONE``.

    An unknown or malformed zone name is ignored: the site's zone applies.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = getattr(request, "session", None)
        chosen = session.get(SESSION_KEY) if session is not None else None
        tz = zone_or_none(chosen) or zone_or_none(request.COOKIES.get(COOKIE_NAME))
        if tz is not None:
            timezone.activate(tz)
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
