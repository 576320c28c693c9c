"""Launch a catalogued task from the command line, through the same service as the pages.

    manage.py launch examples.add --args '[1, 2]'
    manage.py launch examples.process_items --kwargs '{"items": 3}' --queue low --priority HIGH --json

The same as ``manage.py tc task create`` (``taskcenter.cli.tasks``), kept under its
older name. Arguments are checked against the task's signature and type hints like on
the launch page; the run is recorded with source "Command line" and audited.
"""

from django.core.management.base import BaseCommand
from django.utils.translation import gettext as _

from taskcenter.cli.base import Cli, add_common
from taskcenter.cli.tasks import task_create
from taskcenter.priorities import Priority


class Command(BaseCommand):
    help = _("Launch a catalogued task now; prints the task id of its run (the same as 'manage.py tc task create').")

    def add_arguments(self, parser):
        parser.add_argument("name", metavar="task", help=_("Catalogued task, e.g. examples.add."))
        parser.add_argument(
            "--args", dest="task_args", default="[]", help=_("Positional arguments as a JSON list, e.g. '[1, 2]'.")
        )
        parser.add_argument(
            "--kwargs",
            dest="task_kwargs",
            default="{}",
            help=_("Keyword arguments as a JSON object, e.g. '{\"x\": 1}'."),
        )
        parser.add_argument("--queue", help=_("Queue (default: the task's)."))
        parser.add_argument(
            "--priority", type=str.upper, choices=list(Priority.__members__), help=_("Priority (default: the task's).")
        )
        parser.add_argument("--countdown", type=int, help=_("Seconds to wait before the run may start."))
        parser.add_argument("--eta", help=_("Not before this ISO date and time."))
        parser.add_argument(
            "--expires", help=_("Seconds (or an ISO date and time) after which an unstarted run is dropped.")
        )
        parser.add_argument(
            "--dedup-key", default="", help=_("Refuse the launch while a run with this key waits or runs.")
        )
        add_common(parser)

    def handle(self, *args, **options):
        Cli(self, options).run(task_create)
