"""``tc recovery``: a run's checkpoints, and applying a recovery strategy (RESUME, RETRY, ...) to it."""

from django.utils.translation import gettext_lazy as _

from taskcenter import permissions
from taskcenter.cli.base import Cli, add_common, add_parser, iso, service_errors
from taskcenter.cli.tasks import get_run
from taskcenter.models import RunSource
from taskcenter.selectors.recovery import checkpoints_for_run
from taskcenter.services.recovery import run_recover
from taskcenter.strategies import Strategy


def register(groups) -> None:
    recovery = add_parser(
        groups,
        "recovery",
        help=_("List a run's checkpoints; resume it from the last one, or apply another strategy."),
        examples="  manage.py tc recovery checkpoints 0b6c2f4e-...\n"
        "  manage.py tc recovery resume 0b6c2f4e-... --user alice\n"
        "  manage.py tc recovery apply 0b6c2f4e-... --strategy SKIP",
    )
    add_actions(recovery.add_subparsers(dest="action", required=True, metavar="ACTION"))


def add_actions(actions) -> None:
    """The recovery subcommands, under ``tc recovery`` and the older ``manage.py recovery``."""
    listing = add_parser(
        actions,
        "checkpoints",
        help=_("List a run's checkpoints, newest first (a corrupt one is flagged and ignored by a resume)."),
        examples="  manage.py tc recovery checkpoints 0b6c2f4e-... --json",
    )
    listing.add_argument("task_id", metavar="ID", help=_("Task id of the run."))
    add_common(listing)
    listing.set_defaults(handler=recovery_checkpoints)

    resume = add_parser(
        actions,
        "resume",
        help=_("Launch a failed, dead-lettered or orphaned run again from its lineage's last checkpoint (RESUME)."),
        examples="  manage.py tc recovery resume 0b6c2f4e-...\n  manage.py tc recovery resume 0b6c2f4e-... --force",
    )
    resume.set_defaults(strategy=Strategy.RESUME)

    apply = add_parser(
        actions,
        "apply",
        help=_(
            "Apply a strategy to a failed, dead-lettered or orphaned run: "
            "RETRY, RESUME, RESTART (checkpoints discarded), SKIP (resolved, nothing run) or MANUAL."
        ),
        examples="  manage.py tc recovery apply 0b6c2f4e-... --strategy RESTART --user alice",
    )
    apply.add_argument("--strategy", required=True, type=str.upper, choices=Strategy.values)
    for parser in (resume, apply):
        parser.add_argument("task_id", metavar="ID", help=_("Task id of the run."))
        parser.add_argument(
            "--force", action="store_true", help=_("Accept a STARTED run not found orphaned (its worker is gone).")
        )
        add_common(parser)
        parser.set_defaults(handler=recovery_apply)


def recovery_checkpoints(cli: Cli) -> None:
    cli.require_view()
    run = get_run(cli.options["task_id"])
    checkpoints = checkpoints_for_run(run.task_id)
    if cli.as_json:
        rows = [
            {"sequence": c.sequence, "created_at": iso(c.created_at), "progress": c.progress, "valid": c.valid,
             "state": c.state}
            for c in checkpoints
        ]  # fmt: skip
        cli.json({"task_id": run.task_id, "checkpoints": rows})
        return
    if not checkpoints:
        cli.line(_("No checkpoints for %(task_id)s.") % {"task_id": run.task_id})
    for c in checkpoints:
        validity = _("ok") if c.valid else _("CORRUPT (ignored)")
        cli.line(f"#{c.sequence}  {c.created_at:%Y-%m-%d %H:%M:%S}  {c.progress or '-'}  {validity}")


def recovery_apply(cli: Cli) -> None:
    run = get_run(cli.options["task_id"])
    cli.require(
        lambda user: permissions.can_recover(user, run.task_name),
        _("apply a strategy to '%(task)s' (needs 'control run' and its launch permission)") % {"task": run.task_name},
    )
    with service_errors(broker_consequence=_("the run was not launched again")):
        action = run_recover(
            run=run, strategy=cli.options["strategy"], actor=cli.actor, force=cli.options["force"],
            source=RunSource.CLI,
        )  # fmt: skip
    if cli.as_json:
        cli.json({"task_id": run.task_id, "strategy": str(action.strategy), "new_task_id": action.new_task_id or None,
                  "message": action.message})  # fmt: skip
    else:
        applied = _("%(strategy)s applied to %(task_id)s.") % {"strategy": action.strategy, "task_id": run.task_id}
        cli.line(f"{applied} {action.message}")
