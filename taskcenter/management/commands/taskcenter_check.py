"""Report whether the broker and database answer and the Celery settings hold."""

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from taskcenter.selectors.health import run_all_checks


class Command(BaseCommand):
    help = _("Check the broker, the database and the Celery settings taskcenter relies on.")

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-connect", action="store_true", help=_("Only check settings; do not contact broker or database.")
        )

    def handle(self, *args, **options):
        results = run_all_checks(connectivity=not options["no_connect"])
        for result in results:
            mark = self.style.SUCCESS("ok  ") if result.ok else self.style.ERROR("FAIL")
            self.stdout.write(f"{mark} {result.name:<20} {result.message}")
        failed = [result.name for result in results if not result.ok]
        if failed:
            raise CommandError(
                _("%(count)s check(s) failed: %(checks)s") % {"count": len(failed), "checks": ", ".join(failed)}
            )
        self.stdout.write(self.style.SUCCESS(_("All checks passed.")))
