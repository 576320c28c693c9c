"""Launch a catalogued task from the command line, through the same service as the pages.

    manage.py launch examples.add --args '[1, 2]'
    manage.py launch examples.process_items --kwargs '{"items": 3}' --queue low --priority HIGH --json

Arguments are checked against the task's signature and type hints like on the
launch page; the run is recorded with source "Command line" and audited.
"""

import json

from django.core.management.base import BaseCommand, CommandError

from taskcenter import permissions
from taskcenter.management.actors import command_actor
from taskcenter.models import RunSource
from taskcenter.priorities import Priority
from taskcenter.safe_input import JSONInputError, parse_json
from taskcenter.services.errors import ServiceError
from taskcenter.services.launch import InvalidLaunch, run_launch


class Command(BaseCommand):
    help = "Launch a catalogued task now; prints the task id of its run."

    def add_arguments(self, parser):
        parser.add_argument("task", help="Catalogued task, e.g. examples.add.")
        parser.add_argument(
            "--args", dest="task_args", default="[]", help="Positional arguments as a JSON list, e.g. '[1, 2]'."
        )
        parser.add_argument(
            "--kwargs", dest="task_kwargs", default="{}", help="Keyword arguments as a JSON object, e.g. '{\"x\": 1}'."
        )
        parser.add_argument("--queue", help="Queue (default: the task's).")
        parser.add_argument("--priority", choices=list(Priority.__members__), help="Priority (default: the task's).")
        parser.add_argument("--countdown", type=int, help="Seconds to wait before the run may start.")
        parser.add_argument("--expires", type=int, help="Seconds after which an unstarted run is dropped.")
        parser.add_argument(
            "--dedup-key", default="", help="Refuse the launch while a run with this key waits or runs."
        )
        parser.add_argument(
            "--user",
            help="Launch as this user: their permission to launch the task is checked, and they are "
            "recorded as the launcher and in the audit trail. Without it the launch is the system's.",
        )
        parser.add_argument("--json", action="store_true", help="Write one JSON document to stdout.")

    def handle(self, *args, **options):
        values = {}
        for name in ("args", "kwargs"):
            try:
                values[name] = parse_json(options[f"task_{name}"])
            except JSONInputError as exc:
                raise CommandError(f"--{name}: {exc}") from None
        user = command_actor(options["user"])
        if user is not None and not permissions.can_launch(user, options["task"]):
            raise CommandError(f"User {user.get_username()!r} may not launch {options['task']!r}; nothing was sent.")
        try:
            run = run_launch(
                task_name=options["task"],
                args=values["args"],
                kwargs=values["kwargs"],
                queue=options["queue"],
                priority=options["priority"],
                countdown=options["countdown"],
                expires=options["expires"],
                dedup_key=options["dedup_key"],
                launched_by=user,
                source=RunSource.CLI,
            )
        except InvalidLaunch as exc:
            lines = [f"{field}: {message}" for field, messages in exc.errors.items() for message in messages]
            raise CommandError("Launch refused:\n  " + "\n  ".join(lines)) from None
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            document = {"task_id": run.task_id, "task": run.task_name, "queue": run.queue, "priority": run.priority}
            self.stdout.write(json.dumps(document))
        else:
            self.stdout.write(run.task_id)
