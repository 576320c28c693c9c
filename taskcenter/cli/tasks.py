"""``tc task``: create (launch), info, list, cancel, terminate, retry and wait for runs."""

import json
import time

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from taskcenter import permissions
from taskcenter.broker import BROKER_ERRORS
from taskcenter.cli.base import (
    Cli,
    add_common,
    add_parser,
    iso,
    json_option,
    moment_option,
    refused,
    service_errors,
    short_time,
    usage_error,
)
from taskcenter.models import RUN_STATES, Run, RunSource
from taskcenter.priorities import Priority
from taskcenter.progress import progress_of
from taskcenter.selectors.runs import RunFilters, run_by_task_id, runs_page
from taskcenter.services import control
from taskcenter.services.launch import run_launch

#: Most runs ``task list`` prints at once (page on with ``--before``).
MAX_LIST = 1000
#: Seconds between two looks at a run that ``task wait`` waits for.
WAIT_INTERVAL = 0.5
#: Width of the progress bar, in characters.
BAR_WIDTH = 30


def register(groups) -> None:
    task = add_parser(
        groups,
        "task",
        help=_("Launch runs, look at them, cancel, terminate, re-run and wait for them."),
        examples="  manage.py tc task create examples.add --args '[1, 2]' --json\n"
        "  manage.py tc task list --state FAILURE --since 2026-12-01 --limit 20\n"
        "  manage.py tc task wait 0b6c2f4e-... --timeout 600",
    )
    actions = task.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = add_parser(
        actions,
        "create",
        help=_("Launch a catalogued task now (or later); prints the task id of its run."),
        examples="  manage.py tc task create examples.add --args '[1, 2]'\n"
        "  manage.py tc task create examples.process_items --kwargs '{\"items\": 3}' --queue low --priority HIGH\n"
        "  manage.py tc task create examples.sync_account --args '[7]' --dedup-key account-7 --expires 300\n"
        "  manage.py tc task create examples.add --args '[1, 2]' --eta 2026-12-24T18:00+01:00 --user alice",
    )
    create.add_argument("name", metavar="NAME", help=_("Catalogued task, e.g. examples.add."))
    _add_arguments_options(create, default_args="[]", default_kwargs="{}")
    create.add_argument("--queue", help=_("Queue (default: the task's)."))
    create.add_argument(
        "--priority", type=str.upper, choices=list(Priority.__members__), help=_("Priority (default: the task's).")
    )
    create.add_argument("--countdown", type=int, help=_("Seconds to wait before the run may start."))
    create.add_argument("--eta", help=_("Not before this ISO date and time (without offset: the project's time zone)."))
    create.add_argument(
        "--expires", help=_("Drop the run if not started within this many seconds, or by this ISO date and time.")
    )
    create.add_argument("--dedup-key", default="", help=_("Refuse the launch while a run with this key waits or runs."))
    add_common(create)
    create.set_defaults(handler=task_create)

    info = add_parser(
        actions,
        "info",
        help=_("Show a run: state, arguments, times, worker, result, attempts, progress and lineage."),
        examples="  manage.py tc task info 0b6c2f4e-...\n  manage.py tc task info 0b6c2f4e-... --json",
    )
    info.add_argument("task_id", metavar="ID", help=_("Task id of the run."))
    add_common(info)
    info.set_defaults(handler=task_info)

    listing = add_parser(
        actions,
        "list",
        help=_("List runs, newest first, with filters; --before pages on to older runs."),
        examples="  manage.py tc task list\n"
        "  manage.py tc task list --state STARTED --queue high\n"
        "  manage.py tc task list --task examples.add --since 2026-12-01 --until 2026-12-02T12:00 --json\n"
        "  manage.py tc task list --limit 100 --before 5123   # the next page, from next_before",
    )
    listing.add_argument("--state", type=str.upper, choices=RUN_STATES, help=_("Only runs in this state."))
    listing.add_argument("--task", default="", help=_("Only runs of this task."))
    listing.add_argument("--queue", default="", help=_("Only runs sent to this queue."))
    listing.add_argument("--worker", default="", help=_("Only runs taken by this worker (its hostname)."))
    listing.add_argument("--schedule", default="", help=_("Only runs launched by this schedule."))
    listing.add_argument("--since", help=_("Only runs created at or after this ISO date (and time)."))
    listing.add_argument("--until", help=_("Only runs created before this ISO date (and time)."))
    listing.add_argument(
        "--limit", type=int, default=50, help=_("How many runs (1..%(most)s, default 50).") % {"most": MAX_LIST}
    )
    listing.add_argument("--before", type=int, help=_("Only runs older than this cursor (next_before of a page)."))
    add_common(listing)
    listing.set_defaults(handler=task_list)

    for name, text, handler in (
        ("cancel", _("Cancel a run that has not started yet: no worker will run it."), task_cancel),
        ("terminate", _("Terminate a started run: its worker process is signalled."), task_terminate),
    ):
        parser = add_parser(actions, name, help=text, examples=f"  manage.py tc task {name} 0b6c2f4e-... --user alice")
        parser.add_argument("task_id", metavar="ID", help=_("Task id of the run."))
        add_common(parser)
        parser.set_defaults(handler=handler)

    retry = add_parser(
        actions,
        "retry",
        help=_("Re-run a finished run with its own arguments or edited ones; the new run is linked to it."),
        examples="  manage.py tc task retry 0b6c2f4e-...\n  manage.py tc task retry 0b6c2f4e-... --args '[3, 4]'",
    )
    retry.add_argument("task_id", metavar="ID", help=_("Task id of the finished run."))
    _add_arguments_options(retry, default_args=None, default_kwargs=None)
    add_common(retry)
    retry.set_defaults(handler=task_retry)

    wait = add_parser(
        actions,
        "wait",
        help=_(
            "Wait until a run finishes (a progress bar on stderr when it reports progress); "
            "exit 0 on SUCCESS, 1 otherwise."
        ),
        examples="  manage.py tc task wait 0b6c2f4e-...\n"
        "  id=$(manage.py tc task create examples.process_items --kwargs '{\"items\": 5}') && "
        "manage.py tc task wait $id --timeout 60",
    )
    wait.add_argument("task_id", metavar="ID", help=_("Task id of the run."))
    wait.add_argument("--timeout", type=float, help=_("Give up (exit 1) after this many seconds; the run goes on."))
    wait.add_argument("--no-progress", action="store_true", help=_("No progress bar on stderr."))
    add_common(wait)
    wait.set_defaults(handler=task_wait)


def _add_arguments_options(parser, *, default_args, default_kwargs) -> None:
    # Stored under task_args / task_kwargs: Django takes "args" out of the options.
    if default_args is None:
        args_help = _("Positional arguments as a JSON list (default: the run's own).")
        kwargs_help = _("Keyword arguments as a JSON object (default: the run's own).")
    else:
        args_help = _("Positional arguments as a JSON list.")
        kwargs_help = _("Keyword arguments as a JSON object.")
    parser.add_argument("--args", dest="task_args", default=default_args, help=args_help)
    parser.add_argument("--kwargs", dest="task_kwargs", default=default_kwargs, help=kwargs_help)


def _arguments(cli: Cli) -> tuple:
    return (
        json_option(cli.options["task_args"], "--args", list, "'[1, 2]'"),
        json_option(cli.options["task_kwargs"], "--kwargs", dict, "'{\"x\": 1}'"),
    )


def get_run(task_id: str) -> Run:
    run = run_by_task_id(task_id)
    if run is None:
        raise usage_error(_("No run with task id '%(task_id)s'.") % {"task_id": task_id})
    return run


# --- documents ---------------------------------------------------------------------------


def run_document(run: Run, *, retry_of: str | None = None) -> dict:
    """A run as plain values with stable keys (arguments of secret parameters are masked).

    ``retry_of`` is the task id of the run it repeats, when the caller read it already
    (a list reads them all in one query); else it is read here.
    """
    duration = run.duration
    if retry_of is None and run.retry_of_id:
        retry_of = run.retry_of.task_id
    return {
        "task_id": run.task_id,
        "task": run.task_name,
        "state": run.state,
        "queue": run.queue,
        "priority": str(run.priority),
        "args": run.args,
        "kwargs": run.kwargs,
        "source": run.source,
        "launched_by": run.launched_by.get_username() if run.launched_by_id else None,
        "schedule": run.periodic_task_name or None,
        "dedup_key": run.dedup_key or None,
        "created_at": iso(run.created_at),
        "eta": iso(run.eta),
        "expires": iso(run.expires),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_seconds": round(duration.total_seconds(), 3) if duration is not None else None,
        "worker": run.worker_name or None,
        "result": (run.result_text or None) if run.is_finished else None,
        "retry_of": retry_of,
        "cancelled_at": iso(run.cancelled_at),
        "cancel_reason": run.cancel_reason or None,
    }


def run_detail(run: Run) -> dict:
    """``run_document`` with the run's attempts, re-runs and live progress."""
    document = run_document(run)
    document["attempts"] = [
        {
            "number": a["number"],
            "worker": a["worker"] or None,
            "pid": a["pid"],
            "started": iso(a["started"]),
            "ended": a["ended"] or None,
            "ended_at": iso(a["ended_at"]),
            "error": a["error"] or None,
        }
        for a in run.attempt_list
    ]
    document["reruns"] = list(run.reruns.order_by("-id").values_list("task_result_id", flat=True)[:50])
    progress = _progress(run.task_id)
    document["progress"] = progress.as_dict() if progress is not None else None
    if document["progress"] is not None:
        document["progress"]["updated_at"] = iso(progress.updated_at)
    return document


def _progress(task_id: str):
    """The run's reported progress; None when it reports none or the broker cannot be read."""
    try:
        return progress_of([task_id]).get(task_id)
    except BROKER_ERRORS:
        return None


# --- handlers ----------------------------------------------------------------------------


def task_create(cli: Cli) -> None:
    options = cli.options
    args, kwargs = _arguments(cli)
    eta = moment_option(options["eta"], "--eta")
    expires = _expires(options["expires"])
    cli.require(lambda user: permissions.can_launch(user, options["name"]), launch_what(options["name"]))
    with service_errors(broker_consequence=_("the task was not sent")):
        run = run_launch(
            task_name=options["name"],
            args=args,
            kwargs=kwargs,
            queue=options["queue"],
            priority=options["priority"],
            countdown=options["countdown"],
            eta=eta,
            expires=expires,
            dedup_key=options["dedup_key"],
            launched_by=cli.actor,
            source=RunSource.CLI,
        )
    if cli.as_json:
        cli.json(run_document(run))
    else:
        cli.line(run.task_id)


def launch_what(task_name: str) -> str:
    """What a refused launch was, for ``Cli.require``."""
    return _("launch '%(task)s'") % {"task": task_name}


def _expires(text: str | None):
    if not text:
        return None
    if text.strip().lstrip("-").isdigit():
        return int(text)
    return moment_option(text, "--expires")


def task_info(cli: Cli) -> None:
    cli.require_view()
    run = get_run(cli.options["task_id"])
    document = run_detail(run)
    if cli.as_json:
        cli.json(document)
        return
    _print_run(cli, document)


def _print_run(cli: Cli, document: dict) -> None:
    for key, value in document.items():
        if key in ("attempts", "reruns", "progress"):
            continue
        if value in (None, "") and key not in ("result",):
            continue
        if isinstance(value, list | dict):
            value = json.dumps(value)
        cli.line(f"{key + ':':<17} {'-' if value is None else value}")
    progress = document.get("progress")
    if progress:
        cli.line(f"{'progress:':<17} {bar_text(progress)}")
    for attempt in document.get("attempts") or []:
        ended = f" -> {attempt['ended']}" if attempt["ended"] else ""
        error = f" ({attempt['error']})" if attempt["error"] else ""
        cli.line(f"{'attempt ' + str(attempt['number']) + ':':<17} {attempt['worker'] or '?'} "
                 f"{attempt['started'] or ''}{ended}{error}")  # fmt: skip
    if document.get("reruns"):
        cli.line(f"{'re-runs:':<17} {', '.join(document['reruns'])}")


def task_list(cli: Cli) -> None:
    cli.require_view()
    options = cli.options
    limit = options["limit"]
    if not 1 <= limit <= MAX_LIST:
        raise usage_error(_("--limit must be between 1 and %(most)s.") % {"most": MAX_LIST})
    filters = RunFilters(
        state=options["state"] or "",
        task_name=options["task"],
        queue=options["queue"],
        worker=options["worker"],
        periodic_task_name=options["schedule"],
        created_from=moment_option(options["since"], "--since"),
        created_to=moment_option(options["until"], "--until"),
    )
    page = runs_page(filters, before=options["before"], page_size=limit)
    if cli.as_json:
        originals = dict(
            Run.objects.filter(pk__in={run.retry_of_id for run in page.runs if run.retry_of_id}).values_list(
                "pk", "task_result_id"
            )
        )
        runs = [run_document(run, retry_of=originals.get(run.retry_of_id)) for run in page.runs]
        cli.json({"runs": runs, "next_before": page.older_cursor, "scan_limited": page.scan_limited})
        return
    if not page.runs and not page.scan_limited:
        cli.line(_("No runs."))
        return
    if page.runs:
        cli.table(
            (_("TASK ID"), _("TASK"), _("STATE"), _("QUEUE"), _("CREATED"), _("WORKER")),
            [(r.task_id, r.task_name, r.state, r.queue, short_time(r.created_at), r.worker_name) for r in page.runs],
        )
    if page.scan_limited:  # the filters share no index: the walk stopped, older runs may match
        found = len(page.runs)
        cli.line(
            _("Looked at %(scanned)s runs and found %(found)s matching every filter; older runs may match.")
            % {"scanned": page.scanned, "found": found}
        )
    if page.older_cursor is not None:
        cli.line(_("More: %(option)s") % {"option": f"--before {page.older_cursor}"})


def task_cancel(cli: Cli) -> None:
    run = get_run(cli.options["task_id"])
    cli.require(permissions.can_control, _("cancel runs (needs 'control run')"))
    with service_errors(broker_consequence=_("the run was not cancelled")):
        control.run_cancel(run=run, actor=cli.actor)
    text = _("Cancelled %(task)s [%(task_id)s]; no worker will run it.") % {
        "task": run.task_name,
        "task_id": run.task_id,
    }
    _report_change(cli, run, "cancelled", text)


def task_terminate(cli: Cli) -> None:
    run = get_run(cli.options["task_id"])
    cli.require(permissions.can_control, _("terminate runs (needs 'control run')"))
    with service_errors(broker_consequence=_("the run was not terminated")):
        control.run_terminate(run=run, actor=cli.actor)
    text = _("Terminated %(task)s [%(task_id)s] with %(signal)s.") % {
        "task": run.task_name,
        "task_id": run.task_id,
        "signal": settings.TASKCENTER_TERMINATE_SIGNAL,
    }
    _report_change(cli, run, "terminated", text)


def _report_change(cli: Cli, run: Run, status: str, text: str) -> None:
    if cli.as_json:
        cli.json({"status": status, "run": run_document(get_run(run.task_id))})
    else:
        cli.line(text)


def task_retry(cli: Cli) -> None:
    run = get_run(cli.options["task_id"])
    args, kwargs = _arguments(cli)
    cli.require(permissions.can_control, _("re-run runs (needs 'control run')"))
    cli.require(lambda user: permissions.can_launch(user, run.task_name), launch_what(run.task_name))
    with service_errors(broker_consequence=_("the run was not re-run")):
        new_run = control.run_retry(run=run, actor=cli.actor, args=args, kwargs=kwargs, source=RunSource.CLI)
    if cli.as_json:
        cli.json(run_document(new_run))
    else:
        cli.line(new_run.task_id)


def task_wait(cli: Cli) -> None:
    cli.require_view()
    options = cli.options
    timeout = options["timeout"]
    if timeout is not None and timeout <= 0:
        raise usage_error(_("--timeout must be a positive number of seconds."))
    run = get_run(options["task_id"])
    bar = ProgressBar(cli.stderr) if not options["no_progress"] else None
    deadline = time.monotonic() + timeout if timeout is not None else None
    while not run.is_finished:
        if bar is not None:
            progress = _progress(run.task_id)
            if progress is not None:
                bar.show(progress.as_dict())
        if deadline is not None and time.monotonic() >= deadline:
            if bar is not None:
                bar.close()
            raise refused(
                _("Run %(task_id)s is still %(state)s after %(seconds)s s; stopped waiting (it goes on).")
                % {"task_id": run.task_id, "state": run.state, "seconds": f"{timeout:g}"}
            )
        time.sleep(WAIT_INTERVAL)
        run = get_run(run.task_id)
    if bar is not None:
        progress = _progress(run.task_id)
        if progress is not None and bar.shown:
            bar.show(progress.as_dict())
        bar.close()
    document = run_document(run)
    if cli.as_json:
        cli.json(document)
    else:
        cli.line(f"{run.task_id} {run.state}" + (f": {document['result']}" if document["result"] else ""))
    if run.state != "SUCCESS":
        raise refused(_("Run %(task_id)s finished %(state)s.") % {"task_id": run.task_id, "state": run.state})


def bar_text(progress: dict) -> str:
    """A progress bar with percent, items done of total, ETA and the task's message."""
    filled = round(BAR_WIDTH * progress["percent"] / 100)
    text = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {progress['percent']:5.1f}%"
    if progress.get("total") is not None and progress.get("done") is not None:
        text += f"  {progress['done']}/{progress['total']}"
    if progress.get("eta_seconds") is not None:
        text += "  " + _("eta %(seconds)ss") % {"seconds": progress["eta_seconds"]}
    if progress.get("message"):
        text += f"  {progress['message']}"
    return text


class ProgressBar:
    """A one-line bar on stderr, redrawn in place on a terminal, a new line per change otherwise."""

    def __init__(self, out):
        self.out = out
        self.tty = out.isatty()
        self.last = None
        self.shown = False

    def show(self, progress: dict) -> None:
        text = bar_text(progress)
        if text == self.last:
            return
        self.last, self.shown = text, True
        # style_func=str: not in the red Django gives stderr on a terminal.
        if self.tty:
            self.out.write("\r\x1b[K" + text, style_func=str, ending="")
        else:
            self.out.write(text, style_func=str)
        self.out.flush()

    def close(self) -> None:
        if self.tty and self.shown:
            self.out.write("")
