"""``tc monitor``: health in detail (checks, workers, queues, alerts) and a live view of running tasks' progress."""

import json
import time

from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from taskcenter.broker import BROKER_ERRORS
from taskcenter.cli.base import Cli, add_common, add_parser, iso, usage_error
from taskcenter.cli.status import add_timeout, exit_by_health, health_checks, health_document, print_checks
from taskcenter.cli.tasks import bar_text
from taskcenter.progress import progress_of
from taskcenter.selectors.alerts import current_alerts, live_queues
from taskcenter.selectors.monitoring import workers_state
from taskcenter.selectors.runs import RunFilters, runs_filtered, with_results

#: Running runs shown by ``monitor progress`` unless --limit says otherwise.
PROGRESS_LIMIT = 20
#: ANSI: cursor home, clear the screen.
CLEAR = "\x1b[H\x1b[2J"


def register(groups) -> None:
    monitor = add_parser(
        groups,
        "monitor",
        help=_("Health in detail, and a live view of running tasks' progress."),
        examples="  manage.py tc monitor health\n  manage.py tc monitor progress --queue low\n"
        "  manage.py tc monitor progress --once --json",
    )
    actions = monitor.add_subparsers(dest="action", required=True, metavar="ACTION")

    health = add_parser(
        actions,
        "health",
        help=_(
            "The status checks, with each worker, each queue's backlog and the alerts firing; "
            "exit 0 when healthy, 1 otherwise."
        ),
        examples="  manage.py tc monitor health\n  manage.py tc monitor health --json",
    )
    add_timeout(health)
    add_common(health)
    health.set_defaults(handler=monitor_health)

    progress = add_parser(
        actions,
        "progress",
        help=_("Running tasks with their progress, redrawn every few seconds until Ctrl-C (--once: one frame)."),
        examples="  manage.py tc monitor progress\n  manage.py tc monitor progress --task examples.process_items "
        "--interval 1\n  manage.py tc monitor progress --once --json",
    )
    progress.add_argument("--task", default="", help=_("Only runs of this task."))
    progress.add_argument("--queue", default="", help=_("Only runs of this queue."))
    progress.add_argument("--limit", type=int, default=PROGRESS_LIMIT, help=_("Most runs shown (newest first)."))
    progress.add_argument("--interval", type=float, default=2.0, help=_("Seconds between frames (default 2)."))
    progress.add_argument("--once", action="store_true", help=_("Print one frame and exit (for scripts and tests)."))
    add_common(progress)
    progress.set_defaults(handler=monitor_progress)


def monitor_health(cli: Cli) -> None:
    cli.require_view()
    results = health_checks(cli.options["timeout"])
    broker_ok = next(result.ok for result in results if result.name == "broker")
    workers = workers_state() if broker_ok else []
    queues = live_queues().queues if broker_ok else []
    alerts = current_alerts() if broker_ok else []
    document = health_document(results)
    document["workers"] = [
        {"hostname": w.hostname, "online": w.online, "last_heartbeat": iso(w.last_heartbeat), "active": w.active,
         "processed": w.processed}
        for w in workers
    ]  # fmt: skip
    document["queues"] = [{"name": q.name, "depth": q.depth, "oldest_age_seconds": q.oldest_age} for q in queues]
    document["alerts"] = [{"name": a.name, "severity": a.severity, "message": a.message} for a in alerts]
    if cli.as_json:
        cli.json(document)
    else:
        print_checks(cli, results)
        if workers:
            cli.line("")
            cli.table(
                (_("WORKER"), _("ONLINE"), _("ACTIVE"), _("PROCESSED"), _("LAST HEARTBEAT")),
                [(w.hostname, _("yes") if w.online else _("no"), w.active, w.processed, _clock(w.last_heartbeat))
                 for w in workers],
            )  # fmt: skip
        if queues:
            cli.line("")
            cli.table(
                (_("QUEUE"), _("WAITING"), _("OLDEST")),
                [(q.name, q.depth, f"{q.oldest_age:.0f} s" if q.oldest_age is not None else "") for q in queues],
            )
        cli.line("")
        if alerts:
            for alert in alerts:
                cli.line(f"{_('ALERT')} {alert.severity:<8} {alert.name}: {alert.message}", cli.style.WARNING)
        elif broker_ok:
            cli.line(_("No alerts firing."))
        else:
            cli.line(_("Alerts not evaluated: the broker is not reachable."))
    exit_by_health(cli, results)


def monitor_progress(cli: Cli) -> None:
    cli.require_view()
    options = cli.options
    if options["limit"] < 1 or options["interval"] <= 0:
        raise usage_error(_("--limit and --interval must be positive."))
    filters = RunFilters(state="STARTED", task_name=options["task"], queue=options["queue"])
    live = not options["once"]
    clear = live and not cli.as_json and cli.stdout.isatty()
    try:
        while True:
            frame = _frame(filters, options["limit"])
            if cli.as_json and live:  # one document per frame: a stream of JSON lines
                cli.stdout.write(json.dumps(frame, separators=(",", ":")))
            elif cli.as_json:
                cli.json(frame)
            else:
                if clear:
                    cli.stdout.write(CLEAR, ending="")
                _print_frame(cli, frame)
            if not live:
                return
            cli.stdout.flush()
            time.sleep(options["interval"])
    except KeyboardInterrupt:
        return


def _frame(filters: RunFilters, limit: int) -> dict:
    runs = with_results(list(runs_filtered(filters)[:limit]))
    try:
        progress = progress_of([run.task_id for run in runs])
        problem = ""
    except BROKER_ERRORS:
        progress, problem = {}, str(_("Progress not read: the broker is not reachable."))
    rows = []
    for run in runs:
        reported = progress.get(run.task_id)
        rows.append(
            {
                "task_id": run.task_id,
                "task": run.task_name,
                "queue": run.queue,
                "worker": run.worker_name or None,
                "started_at": iso(run.started_at),
                "progress": dict(reported.as_dict(), updated_at=iso(reported.updated_at)) if reported else None,
            }
        )
    return {"at": iso(timezone.now()), "running": rows, "problem": problem or None}


def _clock(unix: float | None) -> str:
    return (iso(unix) or "")[:19].replace("T", " ")


def _print_frame(cli: Cli, frame: dict) -> None:
    cli.line(
        _("Running tasks at %(time)s: %(count)s")
        % {"time": frame["at"][:19].replace("T", " "), "count": len(frame["running"])}
    )
    if frame["problem"]:
        cli.line(frame["problem"], cli.style.WARNING)
    for row in frame["running"]:
        progress = bar_text(row["progress"]) if row["progress"] else _("(no progress reported)")
        cli.line(f"{row['task_id']}  {row['task']:<24} {progress}")
