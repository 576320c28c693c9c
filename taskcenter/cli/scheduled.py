"""``tc scheduled``: the runs waiting in the scheduled set for their countdown, ETA or retry (the Scheduled page)."""

from django.utils.translation import gettext_lazy as _

from taskcenter import permissions
from taskcenter.cli.base import Cli, add_common, add_parser, iso, service_errors, short_time
from taskcenter.cli.tasks import get_run
from taskcenter.selectors.scheduled import scheduled_page
from taskcenter.services import scheduled


def register(groups) -> None:
    group = add_parser(
        groups,
        "scheduled",
        help=_("Runs waiting for their countdown, ETA or a retry's backoff: list them, run one now."),
        examples="  manage.py tc scheduled list --limit 20\n  manage.py tc scheduled run-now 0b6c2f4e-... --user alice",
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = add_parser(
        actions,
        "list",
        help=_("Waiting runs in due order (the next page starts --after the last due time shown)."),
        examples="  manage.py tc scheduled list\n  manage.py tc scheduled list --after 1764669600.5 --json",
    )
    listing.add_argument(
        "--limit", type=int, default=50, choices=range(1, 501), metavar="N", help=_("At most N (1-500).")
    )
    listing.add_argument("--after", type=float, help=_("Only runs due after this Unix time (a page's cursor)."))
    add_common(listing)
    listing.set_defaults(handler=scheduled_list)
    now = add_parser(
        actions,
        "run-now",
        help=_("Make a waiting run due at once (needs 'control run' and the task's launch permission)."),
        examples="  manage.py tc scheduled run-now 0b6c2f4e-...",
    )
    now.add_argument("task_id", metavar="ID", help=_("Task id of the waiting run."))
    add_common(now)
    now.set_defaults(handler=scheduled_run_now)


def scheduled_list(cli: Cli) -> None:
    cli.require_view()
    with service_errors(broker_consequence=_("the scheduled set cannot be read")):
        page = scheduled_page(after=cli.options.get("after"), limit=cli.options["limit"])
    if cli.as_json:
        cli.json(
            {
                "total": page.total,
                "next_after": page.next_after,
                "runs": [
                    {
                        "task_id": item.held.task_id,
                        "task_name": item.held.task_name,
                        "queue": item.held.queue,
                        "due": iso(item.held.due),
                        "state": item.run.state if item.run else None,
                    }
                    for item in page.waiting
                ],
            }
        )
        return
    cli.line(_("%(count)s waiting") % {"count": page.total})
    cli.table(
        (_("DUE"), _("TASK"), _("QUEUE"), _("TASK ID")),
        [(short_time(item.held.due), item.held.task_name, item.held.queue, item.held.task_id) for item in page.waiting],
    )
    if page.next_after:
        cli.line(_("More: %(option)s") % {"option": f"--after {page.next_after}"})


def scheduled_run_now(cli: Cli) -> None:
    run = get_run(cli.options["task_id"])
    cli.require(permissions.can_control, _("run a delayed run now (needs 'control run')"))
    with service_errors(broker_consequence=_("the run was not moved")):
        report = scheduled.scheduled_run_now(run=run, actor=cli.actor)
    cli.json({"status": "due", "task_id": run.task_id}) if cli.as_json else cli.line(report.message)
