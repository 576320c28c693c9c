"""What every ``manage.py tc`` subcommand shares: common options, output, errors, the actor and its rights.

Exit codes: 0 done; 1 refused (no permission, a state that does not allow it) or failed
(broker down, a run that failed, a system not healthy); 2 the command line is wrong (bad
JSON, an unknown task, run or schedule, an invalid value). Django turns a ``CommandError``
into its message on stderr and that exit code.
"""

import argparse
import json
import unicodedata
from contextlib import contextmanager
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from taskcenter import permissions
from taskcenter.broker import BROKER_ERRORS, broker_down_message
from taskcenter.management.actors import command_actor
from taskcenter.models import RunSource
from taskcenter.safe_input import JSONInputError, parse_json
from taskcenter.services.audit import audit_context
from taskcenter.services.errors import InvalidInput, NotFound, ServiceError

#: Exit code of a refused or failed action.
REFUSED = 1
#: Exit code of a wrong command line (argparse uses 2 as well).
USAGE = 2


def usage_error(message: str) -> CommandError:
    return CommandError(message, returncode=USAGE)


def refused(message: str) -> CommandError:
    return CommandError(message, returncode=REFUSED)


def add_parser(actions, name: str, *, help: str, examples: str = "", **kwargs) -> argparse.ArgumentParser:  # noqa: A002
    """A subcommand parser whose ``--help`` shows its description and examples as written."""
    return actions.add_parser(
        name,
        help=help,
        description=help,
        epilog=f"examples:\n{examples}" if examples else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )


def add_common(parser: argparse.ArgumentParser) -> None:
    """``--json`` and ``--user``, on every leaf subcommand."""
    parser.add_argument("--json", action="store_true", help=_("Write one JSON document to stdout (for scripts)."))
    parser.add_argument(
        "--user",
        metavar="USERNAME",
        help=_(
            "Act as this user: their permissions are checked as on the pages and they are the actor in the "
            "audit trail. Without it the command acts as the system."
        ),
    )


class Cli:
    """One invocation: its options, where it writes, and who acts."""

    def __init__(self, command, options: dict):
        self.options = options
        self.stdout = command.stdout
        self.stderr = command.stderr
        self.style = command.style
        self.as_json = bool(options.get("json"))
        try:
            self.actor = command_actor(options.get("user"))
        except CommandError as exc:
            raise usage_error(str(exc)) from None

    def run(self, handler) -> None:
        """Run a subcommand's handler; what it audits is marked ``"source": "cli"``."""
        with audit_context(source=RunSource.CLI.value):
            handler(self)

    # --- rights -------------------------------------------------------------------------

    def require(self, check, what: str) -> None:
        """Refuse (exit 1, nothing done) when ``--user`` was given and ``check(user)`` is false."""
        if self.actor is not None and not check(self.actor):
            raise refused(
                _("You may not %(what)s (acting as user '%(user)s'); nothing was done.")
                % {"what": what, "user": self.actor.get_username()}
            )

    def require_view(self) -> None:
        """Reads need what the pages need: a staff user with ``view_run``."""
        self.require(permissions.can_view, _("view taskcenter (needs staff and 'view run')"))

    def allows(self, check) -> bool:
        """``check(user)`` for ``--user``; True for the system."""
        return self.actor is None or bool(check(self.actor))

    # --- output -------------------------------------------------------------------------

    def json(self, document) -> None:
        self.stdout.write(json.dumps(document, indent=2, default=_json_default))

    def line(self, text: str = "", style=None) -> None:
        self.stdout.write(style(text) if style else text)

    def table(self, header: tuple, rows: list[tuple]) -> None:
        """Left-aligned columns as wide as their widest cell, on a terminal (a Chinese character is two wide)."""
        table = [
            tuple(str(cell) for cell in header),
            *[tuple("-" if cell in (None, "") else str(cell) for cell in row) for row in rows],
        ]
        widths = [max(display_width(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            cells = (cell + " " * (width - display_width(cell)) for cell, width in zip(row, widths, strict=True))
            self.stdout.write("  ".join(cells).rstrip())


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal: wide (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


@contextmanager
def service_errors(*, broker_consequence: str = _("it could not be done")):
    """Turn a refused or failed service call into a ``CommandError`` with its message and exit code."""
    try:
        yield
    except ServiceError as exc:
        raise CommandError(
            describe(exc), returncode=USAGE if isinstance(exc, InvalidInput | NotFound) else REFUSED
        ) from None
    except BROKER_ERRORS as exc:
        raise refused(f"{broker_down_message(broker_consequence)} ({exc})") from None


def describe(exc: ServiceError) -> str:
    """A service error as the operator's message: one line per field when it is about fields."""
    errors = getattr(exc, "errors", None) or {}
    lines = [f"{field or _('error')}: {message}" for field, messages in errors.items() for message in messages]
    if len(lines) > 1:
        return str(_("Refused:")) + "\n  " + "\n  ".join(lines)
    return str(exc)


# --- parsing ---------------------------------------------------------------------------


def json_option(text: str | None, option: str, kind: type, example: str):
    """Parse a ``--args``/``--kwargs`` value (None stays None); a wrong one is a usage error."""
    if text is None:
        return None
    try:
        value = parse_json(text)
    except JSONInputError as exc:
        raise usage_error(
            _("%(option)s is not valid JSON (%(error)s); e.g. %(example)s.")
            % {"option": option, "error": exc, "example": example}
        ) from None
    if not isinstance(value, kind):
        raise usage_error(wrong_json_kind(option, kind, example))
    return value


def wrong_json_kind(option: str, kind: type, example: str) -> str:
    """The message for a JSON value of the wrong kind (a list or an object was asked for)."""
    if kind is list:
        return _("%(option)s must be a JSON list, e.g. %(example)s.") % {"option": option, "example": example}
    return _("%(option)s must be a JSON object, e.g. %(example)s.") % {"option": option, "example": example}


def moment_option(text: str | None, option: str, *, end_of_day: bool = False) -> datetime | None:
    """An ISO date or date and time; without an offset it is in the project's time zone."""
    if not text:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time.max if end_of_day else time.min)
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise usage_error(
            _("%(option)s '%(value)s' is not an ISO date or date and time, e.g. 2026-12-24T18:00.")
            % {"option": option, "value": text}
        ) from None
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=ZoneInfo(timezone.get_current_timezone_name()))
    return moment


def iso(moment) -> str | None:
    """A datetime as ISO 8601 with its UTC offset, in the project's time zone; None stays None."""
    if moment is None:
        return None
    if isinstance(moment, int | float):
        moment = datetime.fromtimestamp(moment, tz=timezone.get_current_timezone())
    return timezone.localtime(moment).isoformat()


def short_time(moment) -> str:
    """A datetime as "YYYY-MM-DD HH:MM:SS" in the project's time zone, for tables."""
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S}" if moment else ""


def _json_default(value):
    if isinstance(value, datetime):
        return iso(value)
    return str(value)
