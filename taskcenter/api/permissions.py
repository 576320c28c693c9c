"""DRF permission classes over ``taskcenter.permissions`` (the pages' own rules)."""

from rest_framework import permissions as drf

from taskcenter import permissions


class CanView(drf.BasePermission):
    """Every API endpoint: a signed-in (or token) user allowed to see the pages."""

    message = "You need staff access and the 'view run' permission to use the task center."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and permissions.can_view(user))


def require(check, message: str):
    """A permission class: ``CanView`` and ``check(user)`` for unsafe methods (reads need only ``CanView``)."""

    class Required(CanView):
        def has_permission(self, request, view) -> bool:
            if not super().has_permission(request, view):
                return False
            if request.method in drf.SAFE_METHODS:
                return True
            if not check(request.user):
                self.message = message
                return False
            return True

    Required.__name__ = f"Require_{check.__name__}"
    return Required
