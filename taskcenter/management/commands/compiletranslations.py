"""Compile the project's translation catalogues (``.po``) into the ``.mo`` files Django reads.

Django's ``compilemessages`` needs GNU gettext's ``msgfmt`` on the machine; this command
uses Babel (a Python package in requirements.txt), so ``make run`` and ``make test`` compile
the catalogues on a fresh machine without a system package. Fuzzy entries are left out,
as ``msgfmt`` does. ``--check`` compiles nothing and fails if a catalogue has an entry
without a translation.
"""

from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _


def catalogue_files() -> list[Path]:
    """Every ``.po`` file under the project's ``LOCALE_PATHS``."""
    return sorted(po for folder in settings.LOCALE_PATHS for po in Path(folder).glob("*/LC_MESSAGES/*.po"))


class Command(BaseCommand):
    help = _("Compile the translation catalogues (locale/*/LC_MESSAGES/*.po) into .mo files, without GNU gettext.")

    def add_arguments(self, parser):
        parser.add_argument(
            "--check", action="store_true", help=_("fail if an entry has no translation; write nothing")
        )

    def handle(self, *args, check: bool = False, **options):
        files = catalogue_files()
        if not files:
            raise CommandError(f"No translation catalogue found under {settings.LOCALE_PATHS}")
        untranslated = 0
        for po in files:
            with po.open("rb") as source:
                try:
                    catalogue = read_po(source, abort_invalid=True)
                except Exception as error:  # noqa: BLE001 (Babel raises several kinds for a broken file)
                    raise CommandError(f"{po}: {error}") from error
            # A fuzzy entry is a guess by makemessages; it is not compiled, so it counts as missing.
            missing = [
                m.id for m in catalogue if m.id and (m.fuzzy or not (all(m.string) if m.pluralizable else m.string))
            ]
            untranslated += len(missing)
            if check:
                for message_id in missing[:50]:
                    self.stderr.write(f"{po}: no translation for {message_id!r}")
                continue
            with po.with_suffix(".mo").open("wb") as target:
                write_mo(target, catalogue, use_fuzzy=False)
            if options["verbosity"] >= 1:
                self.stdout.write(f"Compiled {po.relative_to(settings.BASE_DIR)} ({len(catalogue)} messages)")
        if check and untranslated:
            raise CommandError(f"{untranslated} message(s) have no translation")
