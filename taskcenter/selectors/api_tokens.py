"""Reads of API tokens."""

from django.db.models import QuerySet

from taskcenter.models import ApiToken


def tokens_of(user) -> QuerySet[ApiToken]:
    """The tokens of ``user``, newest first, revoked and expired ones included."""
    return ApiToken.objects.filter(user=user).order_by("-id")


def token_of(user, token_id) -> ApiToken | None:
    """One token of ``user`` by id, or None (another user's token is never found)."""
    return ApiToken.objects.filter(user=user, pk=token_id).first() if str(token_id).isdigit() else None
