"""Apply a recovery strategy to a run, or list its checkpoints, from the command line.

    manage.py recovery apply TASK_ID --strategy RESUME [--user NAME] [--force]
    manage.py recovery checkpoints TASK_ID [--json]

The same subcommands as ``manage.py tc recovery`` (``taskcenter.cli.recovery``), kept
under their older name. ``apply`` goes through the same service as the run page
(audited, source "Command line"); with ``--user`` that user's permissions are checked.
"""

from django.core.management.base import BaseCommand
from django.utils.translation import gettext as _

from taskcenter.cli import recovery
from taskcenter.cli.base import Cli


class Command(BaseCommand):
    help = _("Apply a recovery strategy (RETRY, RESUME, RESTART, SKIP, MANUAL) to a run, or list its checkpoints.")

    def add_arguments(self, parser):
        recovery.add_actions(parser.add_subparsers(dest="command", required=True))

    def handle(self, *args, **options):
        Cli(self, options).run(options["handler"])
