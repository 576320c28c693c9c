"""The one family of errors a service raises when it does not do what was asked.

Every refusal or failure of a service is a ``ServiceError``: ``str(error)`` is a
message for the operator, ``status_code`` the HTTP status a page answers with,
and ``outcome`` what the audit trail records (``refused``: the request was wrong
or not allowed, nothing changed; ``error``: the broker or the workers failed).
Views turn one into a response in one place (``taskcenter.views.common``:
``submit`` for forms, ``perform_action`` for buttons); commands turn it into a
``CommandError``.

The generic errors, by HTTP meaning:

==============  ======  =========  ==========================================================
error           status  outcome    meaning
==============  ======  =========  ==========================================================
InvalidInput    400     refused    the input is wrong; ``errors`` maps a field to its messages
Forbidden       403     refused    the actor may not do this
NotFound        404     refused    the target (task, worker, queue) does not exist
Conflict        409     refused    the target's state does not allow it (a duplicate run, ...)
Unavailable     503     error      the broker or the workers did not do it
TimedOut        504     error      no worker answered in time
==============  ======  =========  ==========================================================

Each service names its own errors as subclasses of these (``InvalidLaunch``,
``DuplicateRun``, ``BrokerDown``, ``UnknownQueue`` ...), so a caller catches
the precise one it handles and lets the others reach the view.
"""

from taskcenter.models import AuditEntry

Outcome = AuditEntry.Outcome


class ServiceError(Exception):
    """A service refused or failed an action; ``str(error)`` says why, for the operator.

    ``errors`` maps a form field (or None) to messages, when the error is about fields.
    """

    status_code = 400
    outcome = Outcome.REFUSED
    errors: dict[str | None, list[str]] = {}


class InvalidInput(ServiceError):
    """The input is wrong; ``errors`` maps field names to messages (may be empty for a plain message)."""

    status_code = 400

    def __init__(self, message: str = "", *, errors: dict[str, list[str]] | None = None):
        self.errors = errors if errors is not None else {}
        super().__init__(message or field_messages(self.errors))


class Forbidden(ServiceError):
    """The actor may not do this (a permission the page's own check did not cover)."""

    status_code = 403


class NotFound(ServiceError):
    """The target of the action does not exist."""

    status_code = 404


class Conflict(ServiceError):
    """The target's current state does not allow the action."""

    status_code = 409


class Unavailable(ServiceError):
    """The broker or the workers could not do what was asked; retrying later may work."""

    status_code = 503
    outcome = Outcome.ERROR


class TimedOut(Unavailable):
    """No answer came within the time allowed."""

    status_code = 504


def field_messages(errors: dict) -> str:
    """One line of ``field: messages; ...`` from messages per field."""
    return "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in errors.items())
