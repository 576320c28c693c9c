"""``manage.py tc``: taskcenter's command line, one entry point with subcommands (see docs/cli.md).

    manage.py tc status
    manage.py tc task create examples.add --args '[1, 2]'
    manage.py tc task wait TASK_ID

Each group lives in ``taskcenter.cli``; this command only builds the parser and runs
the chosen subcommand's handler.
"""

import argparse

from django.core.management.base import BaseCommand
from django.utils.translation import gettext as _

from taskcenter.cli import deadletters, monitor, recovery, scheduled, schedules, status, tasks, tokens
from taskcenter.cli.base import Cli

#: The groups, in the order ``--help`` lists them.
GROUPS = (status, tasks, schedules, scheduled, monitor, recovery, deadletters, tokens)

EXAMPLES = """examples:
  manage.py tc status                                   health; exit 0 ok, 1 degraded or failing
  manage.py tc task create examples.add --args '[1, 2]' launch; prints the task id
  manage.py tc task wait TASK_ID                        wait for it; exit 0 on SUCCESS
  manage.py tc task list --state FAILURE --json         runs, newest first
  manage.py tc schedule add nightly examples.add -t cron -c "0 2 * * *" --args '[1, 2]'
  manage.py tc monitor progress                         live progress of running tasks
  manage.py tc recovery resume TASK_ID --user alice     act as alice (checked and audited)
  manage.py tc deadletters replay --task examples.fail --yes

Every subcommand takes --json (one JSON document on stdout) and --user USERNAME.
Exit codes: 0 done, 1 refused or failed, 2 wrong command line (bad JSON, unknown task or id).
"""


class Command(BaseCommand):
    help = _("taskcenter's command line: status, task, schedule, scheduled, monitor, recovery, deadletters, token.")

    def add_arguments(self, parser):
        parser.epilog = EXAMPLES
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        groups = parser.add_subparsers(dest="group", required=True, metavar="GROUP")
        for group in GROUPS:
            group.register(groups)

    def handle(self, *args, **options):
        Cli(self, options).run(options["handler"])
