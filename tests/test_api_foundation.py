"""The API's foundation: schema, docs page, problem details, authentication by token or session, rate limit."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from taskcenter.models import ApiToken, AuditEntry
from taskcenter.services.api_tokens import token_revoke
from tests.api_support import assert_problem, make_user, token_client

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    from django.core.cache import cache

    cache.clear()


def test_schema_is_openapi_3_and_lists_the_endpoints(client):
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/runs/" in schema["paths"]
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_docs_page_needs_login_and_uses_packaged_assets(client, django_user_model):
    response = client.get("/api/v1/docs/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    client.force_login(make_user("reader"))
    page = client.get("/api/v1/docs/").content.decode()
    assert "swagger-ui" in page
    assert "drf_spectacular_sidecar" in page
    # Every asset from this server: no script, style or image from another host (a CDN).
    # (Not a search for "cdn": the page's random CSRF token once held those letters.)
    assert not re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page, re.IGNORECASE), page


def test_anonymous_gets_401_problem_with_bearer_challenge():
    response = APIClient().get("/api/v1/runs/")
    assert_problem(response, 401)
    assert response["WWW-Authenticate"] == "Bearer"


def test_unknown_token_is_refused():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer tc_not-a-real-token")
    assert_problem(client.get("/api/v1/catalogue/"), 401)


def test_revoked_token_is_refused():
    user = make_user("revoked")
    client = token_client(user)
    assert client.get("/api/v1/catalogue/").status_code == 200
    token_revoke(token=client.token, actor=user)
    assert_problem(client.get("/api/v1/catalogue/"), 401)


def test_expired_token_is_refused():
    user = make_user("expiring")
    client = token_client(user, expires_at=timezone.now() + timedelta(hours=1))
    assert client.get("/api/v1/catalogue/").status_code == 200
    ApiToken.objects.filter(pk=client.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_problem(client.get("/api/v1/catalogue/"), 401)


def test_token_of_an_inactive_user_is_refused():
    user = make_user("leaver")
    client = token_client(user)
    user.is_active = False
    user.save()
    assert_problem(client.get("/api/v1/catalogue/"), 401)


def test_last_used_is_written_at_most_once_a_minute():
    client = token_client(make_user("busy"))
    client.get("/api/v1/catalogue/")
    first = ApiToken.objects.get(pk=client.token.pk).last_used_at
    assert first is not None
    client.get("/api/v1/catalogue/")
    assert ApiToken.objects.get(pk=client.token.pk).last_used_at == first
    ApiToken.objects.filter(pk=client.token.pk).update(last_used_at=first - timedelta(minutes=2))
    client.get("/api/v1/catalogue/")
    assert ApiToken.objects.get(pk=client.token.pk).last_used_at > first - timedelta(minutes=2)


def test_only_the_hash_of_a_token_is_stored():
    client = token_client(make_user("hashed"))
    token = ApiToken.objects.get(pk=client.token.pk)
    assert client.plain not in (token.key_hash, token.prefix)
    assert client.plain.startswith(token.prefix)
    assert len(token.key_hash) == 64


def test_non_staff_user_token_gets_403():
    client = token_client(make_user("outsider", staff=False))
    assert_problem(client.get("/api/v1/runs/"), 403)


def test_unknown_path_under_the_api_is_a_problem_404():
    client = token_client(make_user("lost"))
    assert_problem(client.get("/api/v1/nothing-here/"), 404)


def test_unknown_query_parameter_is_refused():
    client = token_client(make_user("typo"))
    body = assert_problem(client.get("/api/v1/runs/?stat=SUCCESS"), 400)
    assert body["errors"] == {"stat": ["Unknown field."]}


def test_malformed_json_is_a_400_problem():
    client = token_client(make_user("sloppy", "launch_any_task"))
    response = client.post("/api/v1/runs/", data="{not json", content_type="application/json")
    assert_problem(response, 400)


def test_session_authentication_requires_csrf(django_user_model):
    user = make_user("browser", "launch_any_task")
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get("/api/v1/catalogue/").status_code == 200
    body = assert_problem(client.post("/api/v1/runs/", {"task": "examples.add"}, format="json"), 403)
    assert "CSRF" in body["detail"]


def test_rate_limit_per_token(settings):
    settings.TASKCENTER_API_RATE = "3/min"
    user = make_user("hasty")
    first, second = token_client(user, name="one"), token_client(user, name="two")
    for _ in range(3):
        assert first.get("/api/v1/catalogue/").status_code == 200
    response = first.get("/api/v1/catalogue/")
    assert_problem(response, 429)
    assert int(response["Retry-After"]) > 0
    assert second.get("/api/v1/catalogue/").status_code == 200  # another token has its own budget


def test_token_create_and_revoke_are_audited():
    user = make_user("audited")
    client = token_client(user, name="deploy")
    token_revoke(token=client.token, actor=user)
    actions = list(AuditEntry.objects.filter(actor=user).values_list("action", "detail__token_name"))
    assert (AuditEntry.Action.TOKEN_CREATE, "deploy") in actions
    assert (AuditEntry.Action.TOKEN_REVOKE, "deploy") in actions


def _operations():
    """Every (method, path) of the live schema, path parameters filled with sample values."""
    from django.test import Client

    schema = Client().get("/api/v1/schema/?format=json").json()
    samples = {"{task_id}": "some-task", "{name}": "default", "{id}": "1", "{hostname}": "w@host"}
    for path, methods in schema["paths"].items():
        for sample, value in samples.items():
            path = path.replace(sample, value)
        assert "{" not in path, path
        for method in methods:
            if method in ("get", "post", "put", "patch", "delete"):
                yield method, path


def test_every_operation_refuses_anonymous_requests_with_401():
    client = APIClient()
    answers = {(m, p): getattr(client, m)(p, {}, format="json") for m, p in _operations()}
    assert len(answers) > 30
    for operation, response in answers.items():
        assert response.status_code == 401, operation
        assert response["Content-Type"] == "application/problem+json", operation


def test_every_write_operation_refuses_a_view_only_token_with_403(redis_server):
    from taskcenter.models import Run

    client = token_client(make_user("looker"))
    writes = [(m, p) for m, p in _operations() if m != "get"]
    assert len(writes) > 20
    for method, path in writes:
        response = getattr(client, method)(path, {}, format="json")
        assert response.status_code == 403, (method, path, response.content[:300])
    assert not Run.objects.exists()
    assert not AuditEntry.objects.exclude(action="token_create").exists()


@pytest.mark.parametrize("rate", ["600", "fast", "10/fortnight", "x/min"])
def test_an_unreadable_rate_stops_start_up(rate):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='tests.settings'; django.setup()"
    env = {**os.environ, "TASKCENTER_API_RATE": rate}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "TASKCENTER_API_RATE" in result.stderr


def test_an_unknown_path_with_a_newline_is_a_problem_404_too(client):
    from tests.api_support import PROBLEM

    response = client.post("/api/v1/schedules/%0A%0A%C3%BE/run/")
    assert response.status_code in (401, 404)
    assert response["Content-Type"].startswith(PROBLEM)
