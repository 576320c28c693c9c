"""Schema-driven fuzz of the REST API: schemathesis generates requests from the live OpenAPI schema.

It calls the Django app in process (WSGI) with a superuser's token, against a real
broker of its own (no worker), and checks every answer: no 5xx, and status code, content type and body
as the schema says. Requests that break the schema (negative cases) are sent too,
and must be refused with a 4xx. ``TASKCENTER_FUZZ_EXAMPLES`` (examples per operation, default 30) bounds its time.
"""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis import checks

from config.wsgi import application
from taskcenter.services.api_tokens import token_create
from tests.api_support import make_user

FUZZ_EXAMPLES = int(os.environ.get("TASKCENTER_FUZZ_EXAMPLES", "30"))
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


# Loaded at collection through the app itself: the schema view reads no database.
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", application)


@pytest.fixture(autouse=True)
def _keep_test_connection():
    """Like Django's test client, keep the test's database connection open across requests.

    A real request closes it when it ends, which would end the test's transaction.
    """
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def superuser_token(db, private_broker, settings, monkeypatch):
    """A superuser's token, with a broker of this module's own that no worker consumes.

    A superuser may pause, purge and resize: on its own broker the fuzz can never
    steer the session's worker; control commands time out quickly instead.
    """
    from django.core.cache import cache

    cache.clear()
    monkeypatch.setattr("taskcenter.services.workers.CONTROL_TIMEOUT", 0.05)
    settings.TASKCENTER_API_RATE = ""  # the fuzz is not a test of the rate limit
    _, plain = token_create(user=make_user("fuzzer", superuser=True), name="fuzz", actor=None)
    return plain


@schema.parametrize()
@hypothesis_settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@pytest.mark.django_db
def test_api_answers_every_generated_request_as_its_schema_says(case, superuser_token):
    case.call_and_validate(headers={"Authorization": f"Bearer {superuser_token}"}, checks=CHECKS)
