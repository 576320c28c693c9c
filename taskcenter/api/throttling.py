"""Per-token rate limit of the API (``TASKCENTER_API_RATE``)."""

import logging

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from taskcenter.broker import BROKER_ERRORS

logger = logging.getLogger(__name__)


class TokenRateThrottle(SimpleRateThrottle):
    """Limit each API token (or each signed-in user's session) to ``TASKCENTER_API_RATE`` requests.

    Counts live in Django's cache (per process with the default local-memory cache;
    set TASKCENTER_CACHE_URL to limit across web processes).
    """

    scope = "api"

    def get_rate(self):
        return settings.TASKCENTER_API_RATE or None

    def __init__(self):
        # Read the rate per request, not at import time: tests and operators change it.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)

    def parse_rate(self, rate):
        if rate is None:
            return (None, None)
        num, period = rate.split("/")
        seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period.strip()[0].lower()]
        return int(num), seconds

    def get_cache_key(self, request, view):
        token = getattr(request, "auth", None)
        if token is not None and getattr(token, "key_hash", None):
            ident = f"token:{token.key_hash[:32]}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"anon:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request, view):
        # A shared cache (TASKCENTER_CACHE_URL) that does not answer must not fail every API request.
        try:
            return super().allow_request(request, view)
        except BROKER_ERRORS as exc:
            logger.warning("API rate limit not applied: the cache does not answer (%s)", exc)
            return True
