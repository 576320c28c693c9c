"""Helpers of the ``manage.py tc`` tests: run it in this process, or as a real command line."""

import io
import json
import os
import subprocess
import sys

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.conftest import ROOT


def tc(*args, stderr: io.StringIO | None = None) -> str:
    """Run ``manage.py tc`` in this process; return its stdout (a refusal raises ``CommandError``)."""
    out = io.StringIO()
    call_command("tc", *args, stdout=out, stderr=stderr or io.StringIO())
    return out.getvalue()


def tc_json(*args):
    return json.loads(tc(*args, "--json"))


def tc_fails(*args, code: int, match: str = "") -> CommandError:
    """Run ``manage.py tc``, expecting a ``CommandError`` with exit code ``code`` (and ``match`` in its message)."""
    with pytest.raises(CommandError, match=match) as raised:
        tc(*args)
    assert raised.value.returncode == code, (raised.value.returncode, str(raised.value))
    return raised.value


def make_user(django_user_model, username: str, *codenames: str, staff: bool = True):
    """A user with these permissions (codenames of taskcenter's or django_celery_beat's)."""
    user = django_user_model.objects.create_user(username=username, password="pw-cli-12345", is_staff=staff)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def command_line(tmp_path):
    """A function that runs ``python manage.py ...`` as its own process on a fresh state folder."""
    hidden = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    env = {key: value for key, value in os.environ.items() if key not in hidden}
    env.update(DEBUG="true", TASKCENTER_STATE_DIR=str(tmp_path / "state"), LOG_LEVEL="WARNING")

    def manage(*args, timeout: float = 120):
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )

    return manage
