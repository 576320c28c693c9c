"""``tc schedule`` (and ``manage.py schedule``): add, list, show, enable, disable, run and remove periodic tasks.

A thin layer over ``taskcenter.services.schedules``: it parses options, calls the service
(which checks the rights of ``--user``) and reports. ``add`` is idempotent by name (same
definition: unchanged; different definition: updated), so a deployment script can run it
on every release.

    manage.py tc schedule add daily_sync examples.add -t cron -c "0 2 * * *" --kwargs '{"x": 1, "y": 2}'
    manage.py tc schedule list --json
"""

import json
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django_celery_beat.models import PeriodicTask

from taskcenter import permissions
from taskcenter.cli.base import Cli, add_common, add_parser, service_errors, usage_error, wrong_json_kind
from taskcenter.models import RunSource, SchedulePolicy
from taskcenter.priorities import Priority
from taskcenter.safe_input import JSONInputError, parse_json
from taskcenter.selectors.schedules import (
    periodic_tasks,
    schedule_describe,
    schedule_error,
    schedule_last_run,
    schedule_next_runs,
    schedule_timezone,
    schedules_overview,
)
from taskcenter.services.schedules import (
    PERIODS,
    ScheduleSpec,
    schedule_delete,
    schedule_run_now,
    schedule_save,
    schedules_set_enabled,
)
from taskcenter.zones import local_text, zone_name

#: ``-t`` values and the service's schedule kinds ("cron" is the short spelling of "crontab").
KIND_ALIASES = {"interval": "interval", "cron": "crontab", "crontab": "crontab", "clocked": "clocked", "solar": "solar"}
#: How many upcoming run times ``show`` lists.
NEXT_RUNS = 10
#: Rows fetched per query by ``list``.
LIST_PAGE = 500

EXAMPLES = """  manage.py tc schedule add daily_sync examples.add -t cron -c "0 2 * * *" --kwargs '{"x": 1, "y": 2}'
  manage.py tc schedule add poll examples.add -t interval --every 5 --period minutes --args '[1, 2]'
  manage.py tc schedule list --json
  manage.py tc schedule show daily_sync
  manage.py tc schedule disable daily_sync --user alice
  manage.py tc schedule run daily_sync
  manage.py tc schedule remove daily_sync"""


def register(groups) -> None:
    schedule = add_parser(
        groups,
        "schedule",
        help=_("Add, list, show, enable, disable, run and remove periodic tasks."),
        examples=EXAMPLES,
    )
    add_actions(schedule.add_subparsers(dest="action", required=True, metavar="ACTION"))


def add_actions(actions) -> None:
    """The schedule subcommands, under ``tc schedule`` and the older ``manage.py schedule``."""
    add = add_parser(
        actions,
        "add",
        help=_("Create a schedule, or bring an existing one of that name up to date."),
        examples=EXAMPLES.split("\n")[0] + "\n" + EXAMPLES.split("\n")[1],
    )
    add.add_argument("name", help=_("Unique name of the schedule."))
    add.add_argument("task", help=_("Catalogued task to run, e.g. examples.add."))
    add.add_argument("-t", "--type", dest="kind", required=True, choices=list(KIND_ALIASES), help=_("Schedule kind."))
    add.add_argument("-c", "--cron", default="", help=_('Crontab "minute hour day-of-month month day-of-week".'))
    add.add_argument("--every", type=int, help=_("Interval: run every N periods."))
    add.add_argument("--period", choices=PERIODS, default="minutes", help=_("Interval unit (default: minutes)."))
    add.add_argument("--at", help=_("Clocked: ISO date and time of the one-off run, e.g. 2026-12-24T18:00."))
    add.add_argument("--event", default="", help=_("Solar: event, e.g. sunrise, sunset, dawn_civil."))
    add.add_argument("--lat", type=float, help=_("Solar: latitude (-90..90)."))
    add.add_argument("--lon", type=float, help=_("Solar: longitude (-180..180)."))
    add.add_argument(
        "--tz",
        default="",
        help=_("Time zone of a crontab, and of a clocked time without offset (%(zone)s).")
        % {"zone": settings.TIME_ZONE},
    )
    add.add_argument(
        "--args", dest="task_args", default="[]", help=_("Positional arguments as a JSON list, e.g. '[1, 2]'.")
    )
    add.add_argument(
        "--kwargs", dest="task_kwargs", default="{}", help=_("Keyword arguments as a JSON object, e.g. '{\"x\": 1}'.")
    )
    add.add_argument("--queue", default="", help=_("Queue (default: the task's own)."))
    add.add_argument(
        "--priority", type=str.upper, choices=list(Priority.__members__), help=_("Priority (default: the task's own).")
    )
    add.add_argument("--expire-seconds", type=int, help=_("Drop a run not started this many seconds after it is sent."))
    add.add_argument(
        "--disabled",
        action="store_true",
        help=_(
            "The schedule is disabled. The enabled state is part of the definition: adding an existing "
            "name without this flag enables it."
        ),
    )
    add.add_argument(
        "--misfire", choices=SchedulePolicy.Misfire.values, default=SchedulePolicy.Misfire.RUN_ONCE,
        help=_("What to do with runs missed while beat was down (default: run_once)."),
    )  # fmt: skip
    add.add_argument("--grace", type=int, help=_("Skip a run missed by more than this many seconds."))
    add.add_argument("--jitter", type=int, default=0, help=_("Delay each run by a random 0..N seconds."))
    add.add_argument(
        "--max-instances", type=int, default=0, help=_("Skip a run while N runs wait or run (0: no limit).")
    )
    add.add_argument("--description", default="", help=_("Free text shown with the schedule."))

    add_parser(
        actions,
        "list",
        help=_("List every schedule with its next and last run."),
        examples="  manage.py tc schedule list\n  manage.py tc schedule list --json",
    )
    for action, text in (
        ("show", _("Show a schedule's definition and its next run times (DST changes flagged).")),
        ("enable", _("Enable a schedule.")),
        ("disable", _("Disable a schedule (beat stops sending it).")),
        ("run", _("Send a schedule's task now, with its arguments, queue and priority; prints the task id.")),
        ("remove", _("Delete a schedule (its past runs stay in the history). A missing one is not an error.")),
    ):
        example = f"  manage.py tc schedule {action} daily_sync" + (" --user alice" if action != "show" else " --json")
        add_parser(actions, action, help=text, examples=example).add_argument("name", help=_("Name of the schedule."))

    for name, sub in actions.choices.items():
        add_common(sub)
        sub.set_defaults(handler=HANDLERS[name])


# --- subcommands ------------------------------------------------------------------------


def schedule_add(cli: Cli) -> None:
    spec = _spec_from_options(cli.options)
    existing = (
        PeriodicTask.objects.select_related("interval", "crontab", "clocked", "solar").filter(name=spec.name).first()
    )
    if existing is not None and _comparable(ScheduleSpec.from_periodic_task(existing)) == _comparable(spec):
        # Unchanged, but only for someone who could have made the change: the same answer as a save.
        cli.require(lambda user: permissions.can_change_schedule(user, spec.task), change_what(spec.name))
        status, task = "unchanged", existing
    else:
        with service_errors(broker_consequence=_("the schedule was not saved")):
            task = schedule_save(spec=spec, actor=cli.actor, existing=existing)
        status = "updated" if existing is not None else "created"
    if cli.as_json:
        cli.json({"status": status, "schedule": _definition(task)})
    else:
        said = {"created": _("Schedule '%(name)s' created: %(task)s, %(schedule)s"),
                "updated": _("Schedule '%(name)s' updated: %(task)s, %(schedule)s"),
                "unchanged": _("Schedule '%(name)s' unchanged: %(task)s, %(schedule)s")}[status]  # fmt: skip
        message = said % {"name": task.name, "task": task.task, "schedule": schedule_describe(task)}
        cli.line(message, cli.style.SUCCESS if status != "unchanged" else None)


def change_what(name: str) -> str:
    """What a refused schedule change was, for ``Cli.require``."""
    return _("change the schedule '%(name)s'") % {"name": name}


def schedule_list(cli: Cli) -> None:
    cli.require_view()
    rows, offset = [], 0
    while True:
        page = schedules_overview(offset=offset, limit=LIST_PAGE)
        rows.extend(page)
        if len(page) < LIST_PAGE:
            break
        offset += LIST_PAGE
    items = [
        {
            "name": row.task.name,
            "task": row.task.task,
            "schedule": row.description,
            "enabled": row.task.enabled,
            "last_run": _iso(row.last_run_at),  # from the runs: beat clears last_run_at on disable
            "last_state": row.last_state,
            "last_task_id": row.last_task_id,
            "next_run": row.next_run.at.isoformat() if row.next_run else None,
            "error": row.error,
        }
        for row in rows
    ]
    if cli.as_json:
        cli.json({"schedules": items})
        return
    if not items:
        cli.line(_("No schedules."))
        return
    table = []
    for item in items:
        last = _short(item["last_run"]) + (f" ({item['last_state']})" if item["last_state"] else "")
        table.append(
            (item["name"], item["task"], item["schedule"], _("yes") if item["enabled"] else _("no"), last or "-",
             _short(item["next_run"], with_offset=True) or "-")
        )  # fmt: skip
    cli.table((_("NAME"), _("TASK"), _("SCHEDULE"), _("ENABLED"), _("LAST RUN"), _("NEXT RUN")), table)


def schedule_show(cli: Cli) -> None:
    cli.require_view()
    task = _get(cli.options["name"])
    definition = _definition(task)
    fires = schedule_next_runs(task, count=NEXT_RUNS)
    next_runs = [{"at": fire.at.isoformat(), "note": fire.note} for fire in fires]
    if cli.as_json:
        cli.json({"schedule": definition, "next_runs": next_runs})
        return
    for key, value in definition.items():
        if value not in (None, "", [], {}) or key in ("enabled", "args", "kwargs"):
            cli.line(f"{key + ':':<16} {json.dumps(value) if isinstance(value, list | dict) else value}")
    if not task.enabled:
        cli.line(f"{'next runs:':<16} " + _("none (disabled)"))
    elif not fires:
        cli.line(f"{'next runs:':<16} " + _("not computed for this kind of schedule"))
    else:
        cli.line(_("next runs (%(zone)s):") % {"zone": schedule_timezone(task)})
        for fire in fires:
            note = f"  [{fire.note.replace('_', ' ')}]" if fire.note else ""
            cli.line(f"  {local_text(fire.at, tz=fire.at.tzinfo)} {zone_name(fire.at.tzinfo)}{note}")


def schedule_enable(cli: Cli) -> None:
    _set_enabled(cli, True)


def schedule_disable(cli: Cli) -> None:
    _set_enabled(cli, False)


def _set_enabled(cli: Cli, enabled: bool) -> None:
    name = cli.options["name"]
    task = _get(name)
    word = "enabled" if enabled else "disabled"
    changed = task.enabled != enabled
    said = {
        (True, True): _("Schedule '%(name)s' enabled."),
        (True, False): _("Schedule '%(name)s' disabled."),
        (False, True): _("Schedule '%(name)s' was already enabled."),
        (False, False): _("Schedule '%(name)s' was already disabled."),
    }[(changed, enabled)]
    if changed:
        with service_errors():
            schedules_set_enabled(periodic_tasks=[task], enabled=enabled, actor=cli.actor)
    else:
        cli.require(lambda user: permissions.can_change_schedule(user, task.task), change_what(name))
    if cli.as_json:
        cli.json({"status": word if changed else "unchanged", "name": name, "enabled": enabled})
    else:
        cli.line(said % {"name": name})


def schedule_run(cli: Cli) -> None:
    task = _get(cli.options["name"])
    with service_errors(broker_consequence=_("the task was not sent")):
        run = schedule_run_now(periodic_task=task, actor=cli.actor, source=RunSource.CLI)
    if cli.as_json:
        cli.json({"name": task.name, "task": run.task_name, "task_id": run.task_id, "queue": run.queue,
                  "priority": str(run.priority)})  # fmt: skip
    else:
        cli.line(
            _("Sent %(task)s for schedule '%(name)s' to %(queue)s: task id %(task_id)s")
            % {"task": run.task_name, "name": task.name, "queue": run.queue, "task_id": run.task_id}
        )


def schedule_remove(cli: Cli) -> None:
    name = cli.options["name"]
    # Checked first, so that a missing schedule tells nothing to someone who may not delete.
    cli.require(permissions.can_delete_schedule, _("delete '%(name)s'") % {"name": name})
    task = PeriodicTask.objects.filter(name=name).first()
    if task is not None:
        with service_errors():
            schedule_delete(periodic_task=task, actor=cli.actor)
    if cli.as_json:
        cli.json({"status": "removed" if task is not None else "not_found", "name": name})
    elif task is not None:
        cli.line(_("Schedule '%(name)s' removed.") % {"name": name})
    else:
        cli.line(_("Schedule '%(name)s' not found, nothing removed.") % {"name": name})


HANDLERS = {
    "add": schedule_add,
    "list": schedule_list,
    "show": schedule_show,
    "enable": schedule_enable,
    "disable": schedule_disable,
    "run": schedule_run,
    "remove": schedule_remove,
}


def _get(name: str) -> PeriodicTask:
    task = periodic_tasks().filter(name=name).first()
    if task is None:
        raise usage_error(_("No schedule named '%(name)s'.") % {"name": name})
    return task


def _json_option(options, name: str, kind: type, example: str):
    # Stored under task_args / task_kwargs: Django takes "args" out of the options.
    try:
        value = parse_json(options[f"task_{name}"])
    except JSONInputError as exc:
        raise usage_error(
            _("%(option)s is not valid JSON (%(error)s); e.g. %(example)s.")
            % {"option": f"--{name}", "error": exc, "example": example}
        ) from None
    if not isinstance(value, kind):
        raise usage_error(wrong_json_kind(f"--{name}", kind, example))
    return value


def _spec_from_options(options) -> ScheduleSpec:
    kind = KIND_ALIASES[options["kind"]]
    spec = ScheduleSpec(
        name=options["name"],
        task=options["task"],
        kind=kind,
        timezone=options["tz"],
        args=_json_option(options, "args", list, "'[1, 2]'"),
        kwargs=_json_option(options, "kwargs", dict, "'{\"x\": 1}'"),
        queue=options["queue"],
        priority=options["priority"] or "",
        expire_seconds=options["expire_seconds"],
        enabled=not options["disabled"],
        description=options["description"],
        misfire=options["misfire"],
        grace_seconds=options["grace"],
        jitter_seconds=options["jitter"],
        max_instances=options["max_instances"],
    )
    if kind == "interval":
        spec.every, spec.period = options["every"], options["period"]
    elif kind == "crontab":
        spec.cron = options["cron"]
    elif kind == "clocked":
        spec.clocked_time = _clocked_time(options["at"], options["tz"])
    else:
        spec.solar_event, spec.latitude, spec.longitude = options["event"], options["lat"], options["lon"]
    unused = [
        flag
        for flag, kinds, value in (
            ("--cron", ("crontab",), options["cron"]),
            ("--every", ("interval",), options["every"]),
            ("--at", ("clocked",), options["at"]),
            ("--event", ("solar",), options["event"]),
            ("--lat", ("solar",), options["lat"]),
            ("--lon", ("solar",), options["lon"]),
        )
        if value not in (None, "") and kind not in kinds
    ]
    if unused:
        raise usage_error(
            ngettext(
                "%(options)s does not apply to a %(kind)s schedule.",
                "%(options)s do not apply to a %(kind)s schedule.",
                len(unused),
            )
            % {"options": ", ".join(unused), "kind": kind}
        )
    return spec


def _clocked_time(text: str | None, tz_name: str) -> datetime | None:
    if not text:
        return None  # the service reports the missing time
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise usage_error(
            _("%(option)s '%(value)s' is not an ISO date and time, e.g. 2026-12-24T18:00.")
            % {"option": "--at", "value": text}
        ) from None
    if timezone.is_naive(moment):
        try:
            moment = moment.replace(tzinfo=ZoneInfo(tz_name or settings.TIME_ZONE))
        except (ZoneInfoNotFoundError, ValueError):
            raise usage_error(_("Unknown time zone '%(zone)s', e.g. Europe/Berlin.") % {"zone": tz_name}) from None
    return moment


def _comparable(spec: ScheduleSpec) -> dict:
    """What defines a schedule, normalised so a stored one compares equal to the same input."""
    values = {
        "task": spec.task,
        "kind": spec.kind,
        "args": spec.args,
        "kwargs": spec.kwargs,
        "queue": spec.queue or "",
        "priority": spec.priority or "",
        "expire_seconds": spec.expire_seconds,
        "enabled": spec.enabled,
        "description": spec.description,
        "misfire": spec.misfire,
        "grace_seconds": spec.grace_seconds,
        "jitter_seconds": spec.jitter_seconds,
        "max_instances": spec.max_instances,
    }
    if spec.kind == "interval":
        values.update(every=spec.every, period=spec.period)
    elif spec.kind == "crontab":
        values.update(cron=" ".join(spec.cron.split()), timezone=spec.timezone or settings.TIME_ZONE)
    elif spec.kind == "clocked":
        values.update(clocked_time=spec.clocked_time)
    elif spec.kind == "solar":
        lat, lon = spec.latitude, spec.longitude
        values.update(
            event=spec.solar_event,
            latitude=round(lat, 6) if lat is not None else None,
            longitude=round(lon, 6) if lon is not None else None,
        )
    return values


def _definition(task: PeriodicTask) -> dict:
    """A schedule as plain values, for ``show`` and JSON output (secret arguments masked)."""
    spec = ScheduleSpec.from_periodic_task(task).masked()
    schedule = {
        "interval": {"every": spec.every, "period": spec.period},
        "crontab": {"cron": spec.cron, "timezone": spec.timezone},
        "clocked": {"at": _iso(spec.clocked_time)},
        "solar": {"event": spec.solar_event, "latitude": spec.latitude, "longitude": spec.longitude},
    }.get(spec.kind, {})
    return {
        "name": task.name,
        "task": task.task,
        "kind": spec.kind,
        **schedule,
        "schedule": schedule_describe(task),
        "enabled": task.enabled,
        "args": spec.args,
        "kwargs": spec.kwargs,
        "queue": spec.queue or None,
        "priority": spec.priority or None,
        "expire_seconds": spec.expire_seconds,
        "misfire": spec.misfire,
        "grace_seconds": spec.grace_seconds,
        "jitter_seconds": spec.jitter_seconds,
        "max_instances": spec.max_instances,
        "description": spec.description,
        "last_run": _iso(last.created_at) if (last := schedule_last_run(task)) else None,
        "error": schedule_error(task),
    }


def _iso(moment: datetime | None) -> str | None:
    return timezone.localtime(moment).isoformat() if moment else None


def _short(iso: str | None, *, with_offset: bool = False) -> str:
    """An ISO time as "YYYY-MM-DD HH:MM:SS" (and its UTC offset), for tables."""
    if not iso:
        return ""
    return iso[:19].replace("T", " ") + (iso[19:].split(".")[-1][-6:] if with_offset else "")
