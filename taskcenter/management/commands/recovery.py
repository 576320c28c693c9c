"""Apply a recovery strategy to a run, or list its checkpoints, from the command line.

    manage.py recovery apply TASK_ID --strategy RESUME [--user NAME] [--force]
    manage.py recovery checkpoints TASK_ID [--json]

``apply`` goes through the same service as the run page (audited, source
"Command line"); with ``--user`` that user's permissions are checked.
"""

import json

from django.core.management.base import BaseCommand, CommandError

from taskcenter import permissions
from taskcenter.management.actors import command_actor
from taskcenter.models import RunSource
from taskcenter.selectors.recovery import checkpoints_for_run
from taskcenter.selectors.runs import run_by_task_id
from taskcenter.services.errors import ServiceError
from taskcenter.services.recovery import run_recover
from taskcenter.strategies import Strategy


class Command(BaseCommand):
    help = "Apply a recovery strategy (RETRY, RESUME, RESTART, SKIP, MANUAL) to a run, or list its checkpoints."

    def add_arguments(self, parser):
        commands = parser.add_subparsers(dest="command", required=True)
        apply = commands.add_parser("apply", help="Apply a strategy to a failed, dead-lettered or orphaned run.")
        apply.add_argument("task_id")
        apply.add_argument("--strategy", required=True, choices=Strategy.values)
        apply.add_argument("--user", help="Act as this user: their permissions are checked and recorded.")
        apply.add_argument(
            "--force", action="store_true", help="Accept a STARTED run not found orphaned (its worker is gone)."
        )
        listing = commands.add_parser("checkpoints", help="List a run's checkpoints, newest first.")
        listing.add_argument("task_id")
        listing.add_argument("--json", action="store_true", help="Write one JSON document to stdout.")

    def handle(self, *args, **options):
        run = run_by_task_id(options["task_id"])
        if run is None:
            raise CommandError(f"No run with task id {options['task_id']!r}.")
        if options["command"] == "checkpoints":
            return self._checkpoints(run, as_json=options["json"])
        user = command_actor(options["user"])
        if user is not None and not permissions.can_recover(user, run.task_name):
            raise CommandError(f"User {user.get_username()!r} may not apply a strategy to {run.task_name!r}.")
        try:
            action = run_recover(
                run=run, strategy=options["strategy"], actor=user, force=options["force"], source=RunSource.CLI
            )
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{action.strategy} applied to {run.task_id}. {action.message}")
        return None

    def _checkpoints(self, run, *, as_json: bool):
        checkpoints = checkpoints_for_run(run.task_id)
        if as_json:
            rows = [
                {"sequence": c.sequence, "created_at": c.created_at.isoformat(), "progress": c.progress,
                 "valid": c.valid, "state": c.state}
                for c in checkpoints
            ]  # fmt: skip
            self.stdout.write(json.dumps({"task_id": run.task_id, "checkpoints": rows}))
            return
        if not checkpoints:
            self.stdout.write(f"No checkpoints for {run.task_id}.")
        for c in checkpoints:
            validity = "ok" if c.valid else "CORRUPT (ignored)"
            self.stdout.write(f"#{c.sequence}  {c.created_at:%Y-%m-%d %H:%M:%S}  {c.progress or '-'}  {validity}")
