"""Access rules shared by every page, and the one place a service's refusal becomes a response.

A service refuses or fails with a ``ServiceError`` (``taskcenter.services.errors``);
``submit`` (a form) and ``perform_action`` (a button) catch it and answer with its
``status_code``: the form again with the reasons on its fields, or the page again
with the message.
"""

from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.utils.translation import gettext as _

from taskcenter import permissions
from taskcenter.services.errors import ServiceError, Unavailable


def staff_required(view):
    """Require a logged-in staff user allowed to view runs; others log in or get 403."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not permissions.can_view(request.user):
            raise PermissionDenied(_("You need staff access and the 'view run' permission to use the task center."))
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


def show_refusal(form, exc) -> None:
    """Put a refused action's reasons on the form: per field where it names one."""
    from django.urls import reverse
    from django.utils.html import format_html

    from taskcenter.services.launch import DuplicateRun

    if isinstance(exc, DuplicateRun) and exc.existing is not None:
        url = reverse("taskcenter:run_detail", args=[exc.existing.task_id])
        form.add_error(None, format_html('{} <a href="{}">{}</a>.', str(exc), url, _("Open that run")))
        return
    for field, errors in (exc.errors or {None: [str(exc)]}).items():
        for error in errors:
            form.add_error(field if field in form.fields else None, error)


def note_unavailable(request, exc: ServiceError) -> None:
    """Remember on ``request`` that the broker or the workers just failed it.

    The page that reports the failure then does not wait on the broker a second time for
    its alerts banner (see ``taskcenter.context_processors``): one timeout per request.
    """
    if isinstance(exc, Unavailable):
        request.taskcenter_unavailable = True


def submit(request, form, action):
    """Call ``action(cleaned_data)`` for a valid POSTed form; return ``(result, status)``.

    ``result`` is None when the form must be shown again: not posted (200),
    invalid (400), or refused by the service (a ``ServiceError``: its status, reasons on the form).
    """
    if request.method != "POST":
        return None, 200
    if not form.is_valid():
        return None, 400
    try:
        return action(form.cleaned_data), 200
    except ServiceError as exc:
        note_unavailable(request, exc)
        show_refusal(form, exc)
        return None, exc.status_code


def perform_action(request, action: Callable, *, page: Callable, page_url: str, success: str = ""):
    """Run a service action (a button); report success and go back to ``page_url``, or show the refusal.

    On success the message is ``success`` or the ``message`` of what ``action`` returned
    (an ``ActionReport``), and the answer a redirect to ``page_url``. On a ``ServiceError``
    the answer is ``page(request, status=...)`` with the error's status and its message.
    """
    try:
        report = action()
    except ServiceError as exc:
        note_unavailable(request, exc)
        messages.error(request, str(exc))
        return page(request, status=exc.status_code)
    messages.success(request, success or report.message)
    return redirect(page_url)
