"""``tc token``: a token created on the command line is shown once, works on the API, and can be revoked."""

import pytest
from rest_framework.test import APIClient

from taskcenter.models import ApiToken, AuditEntry
from tests.api_support import make_user
from tests.cli_helpers import tc, tc_fails, tc_json

pytestmark = pytest.mark.django_db


def test_a_token_created_on_the_command_line_reads_the_api_until_it_is_revoked():
    make_user("alice")
    created = tc_json("token", "create", "deploy", "--expires-days", "30", "--user", "alice")
    plain = created["token"]
    assert created["name"] == "deploy" and created["active"] and created["expires_at"]
    stored = ApiToken.objects.get(pk=created["id"])
    assert plain not in (stored.key_hash, stored.prefix)  # kept hashed only
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {plain}")
    assert api.get("/api/v1/runs/").status_code == 200
    listed = tc_json("token", "list", "--user", "alice")["tokens"]
    assert [token["name"] for token in listed] == ["deploy"] and "token" not in listed[0]
    assert "deploy" in tc("token", "list", "--user", "alice") and plain not in tc("token", "list", "--user", "alice")
    assert tc_json("token", "revoke", "deploy", "--user", "alice")["status"] == "revoked"
    assert api.get("/api/v1/runs/").status_code == 401
    entries = AuditEntry.objects.filter(action__in=["token_create", "token_revoke"]).order_by("id")
    actions = list(entries.values_list("action", "detail"))
    assert [action for action, _ in actions] == ["token_create", "token_revoke"]
    assert all(detail.get("source") == "cli" for _, detail in actions)


def test_token_commands_need_the_owner_and_refuse_bad_input():
    make_user("bob")
    tc_fails("token", "create", "ci", code=2, match="--user")
    tc_fails("token", "create", "ci", "--user", "nobody", code=2)
    tc_fails("token", "create", "", "--user", "bob", code=2, match="name")
    tc_fails("token", "create", "ci", "--expires-days", "0", "--user", "bob", code=2)
    tc_fails("token", "revoke", "no-such", "--user", "bob", code=2, match="no token")
    assert not ApiToken.objects.exists()


def test_nobody_revokes_another_users_token():
    make_user("carol")
    make_user("mallory")
    token_id = tc_json("token", "create", "ci", "--user", "carol")["id"]
    tc_fails("token", "revoke", str(token_id), "--user", "mallory", code=2, match="no token")
    assert ApiToken.objects.get(pk=token_id).revoked_at is None
