"""Delete records older than their retention now (what beat's daily ``taskcenter.retention_cleanup`` does)."""

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from taskcenter.services.retention import retention_cleanup, retention_kinds


class Command(BaseCommand):
    help = _("Delete results, runs, audit entries and other records older than their retention, in bounded batches.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help=_("Count what would be deleted; delete nothing."))
        parser.add_argument(
            "--kind", action="append", dest="kinds", metavar="KIND", help=_("Clean only this kind (repeatable).")
        )

    def handle(self, *args, **options):
        known = [kind.name for kind in retention_kinds()]
        unknown = sorted(set(options["kinds"] or []) - set(known))
        if unknown:
            raise CommandError(f"Unknown kind(s): {', '.join(unknown)}. Known kinds: {', '.join(known)}.")
        report = retention_cleanup(dry_run=options["dry_run"], kinds=options["kinds"])
        for name, count in report.counts.items():
            self.stdout.write(f"{name:<16} {count}")
        self.stdout.write(report.summary())
