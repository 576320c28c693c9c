"""``tc status``: is taskcenter healthy? Database, broker, workers, beat and the monitor; exit 1 unless all pass."""

from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from taskcenter.cli.base import Cli, add_common, add_parser, iso, refused
from taskcenter.selectors.alerts import CHECK_TIMEOUT, readiness_checks
from taskcenter.selectors.health import CheckResult
from taskcenter.selectors.monitoring import monitor_status

#: Checks whose failure stops taskcenter altogether; the others only degrade it.
ESSENTIAL = ("database", "broker")


def register(groups) -> None:
    status = add_parser(
        groups,
        "status",
        help=_(
            "Check the database, the broker, the workers, beat and the monitor; exit 0 when all pass, "
            "1 when taskcenter is degraded or failing."
        ),
        examples="  manage.py tc status\n  manage.py tc status --json || page-the-on-call",
    )
    add_timeout(status)
    add_common(status)
    status.set_defaults(handler=show_status)


def add_timeout(parser) -> None:
    parser.add_argument(
        "--timeout", type=float, default=CHECK_TIMEOUT, help=_("Seconds each check may take (default %(default)s).")
    )


def health_checks(timeout: float) -> list[CheckResult]:
    """The readiness checks of ``/readyz`` and whether the monitor flushes; within ``timeout`` (+ one broker read)."""
    results = readiness_checks(timeout=max(0.1, timeout))
    broker_ok = next(result.ok for result in results if result.name == "broker")
    if not broker_ok:  # its liveness lives in Redis: one more timeout would tell nothing new
        results.append(CheckResult("monitor", False, str(_("Not checked: the broker is not reachable."))))
        return results
    monitor = monitor_status()
    if monitor["alive"]:
        message = _("The monitor is running; last flush at %(time)s.") % {
            "time": f"{timezone.localtime(monitor['tick']):%H:%M:%S}"
        }
    elif monitor["tick"] is not None:
        message = _("The monitor last flushed at %(time)s.") % {
            "time": f"{timezone.localtime(monitor['tick']):%Y-%m-%d %H:%M:%S}"
        }
    else:
        message = str(_("No monitor is running (manage.py taskcenter_monitor): states and alerts are not updated."))
    results.append(CheckResult("monitor", bool(monitor["alive"]), message))
    return results


def overall(results: list[CheckResult]) -> str:
    """ "ok" when every check passes, "fail" when an essential one fails, "degraded" otherwise."""
    failed = {result.name for result in results if not result.ok}
    if not failed:
        return "ok"
    return "fail" if failed & set(ESSENTIAL) else "degraded"


def health_document(results: list[CheckResult]) -> dict:
    return {
        "status": overall(results),
        "checked_at": iso(timezone.now()),
        "checks": {result.name: {"ok": result.ok, "message": result.message} for result in results},
    }


def print_checks(cli: Cli, results: list[CheckResult]) -> None:
    for result in results:
        mark = cli.style.SUCCESS("ok  ") if result.ok else cli.style.ERROR("FAIL")
        cli.line(f"{mark} {result.name:<10} {result.message}")


def exit_by_health(cli: Cli, results: list[CheckResult]) -> None:
    state = overall(results)
    if state != "ok":
        failed = ", ".join(result.name for result in results if not result.ok)
        said = _("taskcenter is failing: %(checks)s.") if state == "fail" else _("taskcenter is degraded: %(checks)s.")
        raise refused(said % {"checks": failed})


def show_status(cli: Cli) -> None:
    cli.require_view()
    results = health_checks(cli.options["timeout"])
    if cli.as_json:
        cli.json(health_document(results))
    else:
        print_checks(cli, results)
        if overall(results) == "ok":
            cli.line(_("Healthy."), cli.style.SUCCESS)
    exit_by_health(cli, results)
