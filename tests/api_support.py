"""Helpers of the API tests: users of each kind, and API clients authenticated with their tokens."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from taskcenter.services.api_tokens import token_create

PROBLEM = "application/problem+json"


def make_user(username: str, *perms: str, superuser: bool = False, staff: bool = True):
    """A user with these ``taskcenter`` permission codenames (``view_run`` always, for staff)."""
    User = get_user_model()
    if superuser:
        return User.objects.create_superuser(username=username, password="pw-" + username)
    user = User.objects.create_user(username=username, password="pw-" + username, is_staff=staff)
    codenames = ["view_run", *perms] if staff else list(perms)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="taskcenter", codename__in=codenames))
    return user


def token_client(user, *, name: str = "test token", **token_options) -> APIClient:
    """An API client sending a new token of ``user``; ``client.token`` is the ApiToken."""
    token, plain = token_create(user=user, name=name, actor=user, **token_options)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plain}")
    client.token, client.plain, client.user = token, plain, user
    return client


def assert_problem(response, status: int) -> dict:
    """The response is problem details with this status; return its body."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith(PROBLEM), response["Content-Type"]
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail", "errors"} <= set(body)
    return body


# Fixtures of the API tests (a pytest plugin of tests/conftest.py).


@pytest.fixture
def admin():
    return token_client(make_user("admin", superuser=True), name="ci")


@pytest.fixture
def viewer():
    return token_client(make_user("viewer"), name="read-only")
