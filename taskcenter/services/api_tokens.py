"""Create, revoke and check personal API tokens.

A token is ``tc_`` followed by 40 random URL-safe characters. Only its SHA-256
hash is stored (a token is a random secret, not a password, so a fast hash is
enough), with its first characters for display; the plain token is returned
once, by ``token_create``.
"""

import hashlib
import secrets
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext

from taskcenter.models import ApiToken
from taskcenter.services.audit import Action, Outcome, audit_record
from taskcenter.services.errors import Conflict, InvalidInput
from taskcenter.zones import local_text

TOKEN_PREFIX = "tc_"
#: How often ``last_used_at`` is written at most: a busy client must not write a row per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
DISPLAY_CHARS = 8


def token_hash(plain: str) -> str:
    return hashlib.sha256(plain.encode("utf-8", "surrogatepass")).hexdigest()


def token_create(*, user, name: str, expires_at: datetime | None = None, actor) -> tuple[ApiToken, str]:
    """Create a token for ``user``; return it and its plain secret (shown once, never stored)."""
    audit = {"actor": actor, "action": Action.TOKEN_CREATE, "target": f"user {user.get_username()}"}
    name = (name or "").strip() if isinstance(name, str) else ""
    errors: dict[str, list[str]] = {}
    if not name or len(name) > 100:
        errors["name"] = [gettext("Give the token a name of 1 to 100 characters.")]
    if expires_at is not None:
        if not isinstance(expires_at, datetime):
            errors["expires_at"] = [gettext("The expiry must be a date and time.")]
        else:
            if timezone.is_naive(expires_at):
                expires_at = timezone.make_aware(expires_at)
            if expires_at <= timezone.now():
                errors["expires_at"] = [gettext("The expiry must be in the future.")]
    if errors:
        error = InvalidInput(errors=errors)
        audit_record(**audit, outcome=Outcome.REFUSED, message=str(error))
        raise error
    plain = TOKEN_PREFIX + secrets.token_urlsafe(30)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=plain[: len(TOKEN_PREFIX) + DISPLAY_CHARS],
        key_hash=token_hash(plain),
        expires_at=expires_at,
    )
    audit_record(
        **audit,
        message=(
            gettext("API token '%(name)s' (%(prefix)s…) created, expires %(at)s.")
            % {"name": name, "prefix": token.prefix, "at": local_text(expires_at, seconds=False)}
            if expires_at
            else gettext("API token '%(name)s' (%(prefix)s…) created.") % {"name": name, "prefix": token.prefix}
        ),
        detail={"token_id": token.pk, "token_name": name},
    )
    return token, plain


def token_revoke(*, token: ApiToken, actor) -> None:
    """Revoke a token: every later request with it is refused (401)."""
    audit = {"actor": actor, "action": Action.TOKEN_REVOKE, "target": f"user {token.user.get_username()}"}
    detail = {"token_id": token.pk, "token_name": token.name}
    if token.revoked_at is not None:
        error = Conflict(gettext("API token %(name)s is already revoked.") % {"name": repr(token.name)})
        audit_record(**audit, outcome=Outcome.REFUSED, message=str(error), detail=detail)
        raise error
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    revoked = gettext("API token '%(name)s' (%(prefix)s…) revoked.") % {"name": token.name, "prefix": token.prefix}
    audit_record(**audit, message=revoked, detail=detail)


def token_authenticate(plain: str) -> ApiToken | None:
    """The active token with this secret (its user joined), or None; note when it was last used."""
    if not isinstance(plain, str) or not plain.startswith(TOKEN_PREFIX) or len(plain) > 200:
        return None
    now = timezone.now()
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=token_hash(plain), revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .first()
    )
    if token is None:
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        # A conditional update: concurrent requests write it once.
        ApiToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        token.last_used_at = now
    return token
