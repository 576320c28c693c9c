"""Manage periodic tasks from the command line: add, list, show, enable, disable, run, remove.

The same subcommands as ``manage.py tc schedule`` (``taskcenter.cli.schedules``), kept
under their older name for scripts that call it.

    manage.py schedule add daily_sync examples.add -t cron -c "0 2 * * *" --kwargs '{"x": 1, "y": 2}'
    manage.py schedule list --json
"""

from django.core.management.base import BaseCommand
from django.utils.translation import gettext as _

from taskcenter.cli import schedules
from taskcenter.cli.base import Cli


class Command(BaseCommand):
    help = _("Add, list, show, enable, disable, run and remove periodic tasks (the same as 'manage.py tc schedule').")

    def add_arguments(self, parser):
        schedules.add_actions(parser.add_subparsers(dest="action", required=True, metavar="ACTION"))

    def handle(self, *args, **options):
        Cli(self, options).run(options["handler"])
