"""Report whether taskcenter is ready: the checks of ``/readyz``, on the command line.

Exit status 0 when every check passes, 1 otherwise (for scripts, cron and
container health checks). ``--json`` prints the same body as ``/readyz``.
"""

import json
import sys

from django.core.management.base import BaseCommand
from django.utils.translation import gettext as _

from taskcenter.selectors.alerts import CHECK_TIMEOUT, readiness_checks


class Command(BaseCommand):
    help = _("Check the database, the broker, the workers online and beat; exit 1 unless all pass.")

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help=_("Print the result as JSON (as /readyz answers)."))
        parser.add_argument(
            "--timeout", type=float, default=CHECK_TIMEOUT, help=_("Seconds each check may take (default %(default)s).")
        )

    def handle(self, *args, **options):
        results = readiness_checks(timeout=max(0.1, options["timeout"]))
        ready = all(result.ok for result in results)
        if options["json"]:
            body = {
                "status": "ok" if ready else "fail",
                "checks": {result.name: {"ok": result.ok, "message": result.message} for result in results},
            }
            self.stdout.write(json.dumps(body, indent=2))
        else:
            for result in results:
                mark = self.style.SUCCESS("ok  ") if result.ok else self.style.ERROR("FAIL")
                self.stdout.write(f"{mark} {result.name:<10} {result.message}")
            failed = [result.name for result in results if not result.ok]
            if failed:
                self.stdout.write(self.style.ERROR(f"Not ready: {', '.join(failed)}."))
            else:
                self.stdout.write(self.style.SUCCESS("Ready."))
        if not ready:
            sys.exit(1)
