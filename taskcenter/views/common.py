"""Access rules shared by every page."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

from taskcenter import permissions


def staff_required(view):
    """Require a logged-in staff user allowed to view runs; others log in or get 403."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not permissions.can_view(request.user):
            raise PermissionDenied("You need staff access and the 'view run' permission to use the task center.")
        return view(request, *args, **kwargs)

    return wrapper


def allowed(check, message: str):
    """Require ``check(user)`` on top of ``staff_required``; refuse with 403 and ``message``."""

    def decorate(view):
        @staff_required
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not check(request.user):
                raise PermissionDenied(message)
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def user_abilities(user) -> dict:
    """What the pages may offer this user; templates hide what is not allowed."""
    return {
        "can_control": permissions.can_control(user),
        "can_manage_queues": permissions.can_manage_queues(user),
        "can_manage_workers": permissions.can_manage_workers(user),
    }
