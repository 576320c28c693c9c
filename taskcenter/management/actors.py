"""Who a management command acts as."""

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.utils.translation import gettext


def command_actor(username: str | None):
    """The user named by a command's ``--user``; None (the system) without one. Raises CommandError."""
    if not username:
        return None
    User = get_user_model()
    try:
        return User.objects.get(**{User.USERNAME_FIELD: username})
    except User.DoesNotExist:
        raise CommandError(gettext("No user named '%(name)s'.") % {"name": username}) from None
