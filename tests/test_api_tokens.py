"""The API tokens page and services: create (shown once), list, revoke, only one's own."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from taskcenter.models import ApiToken, AuditEntry
from taskcenter.selectors.api_tokens import tokens_of
from taskcenter.services.api_tokens import token_authenticate, token_create, token_revoke
from taskcenter.services.errors import Conflict, InvalidInput
from tests.api_support import make_user

pytestmark = pytest.mark.django_db


def test_tokens_page_needs_login(client):
    response = client.get(reverse("taskcenter:api_tokens"))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_created_token_is_shown_once_and_works(client):
    user = make_user("maker")
    client.force_login(user)
    response = client.post(reverse("taskcenter:api_tokens"), {"name": "deploy script"})
    assert response.status_code == 200
    plain = response.context["plain"]
    assert plain in response.content.decode()
    assert response["Cache-Control"] == "no-store"
    assert token_authenticate(plain).user == user
    again = client.get(reverse("taskcenter:api_tokens")).content.decode()
    assert plain not in again and "deploy script" in again


def test_token_form_refuses_a_past_expiry_and_a_blank_name(client):
    client.force_login(make_user("careless"))
    past = (timezone.localtime() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(reverse("taskcenter:api_tokens"), {"name": "old", "expires_at": past})
    assert response.status_code == 400 and "in the future" in response.content.decode()
    assert client.post(reverse("taskcenter:api_tokens"), {"name": ""}).status_code == 400
    assert not ApiToken.objects.exists()


def test_user_revokes_own_token_on_the_page(client):
    user = make_user("owner")
    token, plain = token_create(user=user, name="ci", actor=user)
    client.force_login(user)
    response = client.post(reverse("taskcenter:api_token_revoke", args=[token.pk]))
    assert response.status_code == 302
    assert token_authenticate(plain) is None
    assert AuditEntry.objects.filter(action=AuditEntry.Action.TOKEN_REVOKE, outcome="ok").count() == 1


def test_user_cannot_see_or_revoke_another_users_token(client):
    owner, other = make_user("owner"), make_user("other")
    token, plain = token_create(user=owner, name="private", actor=owner)
    client.force_login(other)
    assert "private" not in client.get(reverse("taskcenter:api_tokens")).content.decode()
    assert client.post(reverse("taskcenter:api_token_revoke", args=[token.pk])).status_code == 404
    assert token_authenticate(plain) is not None


def test_token_services_validate_and_refuse_a_second_revoke():
    user = make_user("svc")
    with pytest.raises(InvalidInput) as refused:
        token_create(user=user, name="  ", actor=user)
    assert "name" in refused.value.errors
    token, _ = token_create(user=user, name="x", expires_at=timezone.now() + timedelta(days=1), actor=user)
    assert list(tokens_of(user)) == [token]
    token_revoke(token=token, actor=user)
    with pytest.raises(Conflict):
        token_revoke(token=token, actor=user)
    assert AuditEntry.objects.filter(action=AuditEntry.Action.TOKEN_CREATE, outcome="refused").count() == 1


def test_admin_revokes_a_leaked_token_audited_and_never_deletes_it(client):
    admin_user = make_user("root", superuser=True)
    owner = make_user("leaky")
    token, plain = token_create(user=owner, name="leaked", actor=owner)
    client.force_login(admin_user)
    changelist = reverse("admin:taskcenter_apitoken_changelist")
    page = client.get(changelist).content.decode()
    assert "leaked" in page and plain not in page and token.key_hash not in page
    response = client.post(changelist, {"action": "revoke", "_selected_action": [token.pk]})
    assert response.status_code == 302
    assert token_authenticate(plain) is None
    entry = AuditEntry.objects.get(action=AuditEntry.Action.TOKEN_REVOKE)
    assert entry.actor == admin_user and entry.detail["token_name"] == "leaked"
    assert client.post(reverse("admin:taskcenter_apitoken_delete", args=[token.pk]), {"post": "yes"}).status_code == 403
    assert ApiToken.objects.filter(pk=token.pk).exists()
