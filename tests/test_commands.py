"""manage.py commands: configuration check and first superuser."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError


def test_configuration_check_passes_with_a_live_broker_and_database(db, redis_server, capsys):
    call_command("taskcenter_check")
    out = capsys.readouterr().out
    assert "Broker redis+socket://" in out and "answers" in out
    assert "Database (sqlite) answers" in out or "Database (postgresql) answers" in out
    assert "All checks passed." in out


def test_configuration_check_names_each_broken_setting(db, redis_server, capsys, celery_conf):
    celery_conf(worker_prefetch_multiplier=4, accept_content=["json", "yaml"])  # anything but JSON is refused
    with pytest.raises(CommandError, match="2 check\\(s\\) failed: serialization, prefetch"):
        call_command("taskcenter_check", "--no-connect")
    out = capsys.readouterr().out
    assert "pickle lets the broker run code" in out
    assert "worker_prefetch_multiplier is 4" in out


def test_system_check_reports_unsafe_celery_settings(celery_conf):
    from django.core import checks

    celery_conf(task_acks_late=False)
    errors = checks.run_checks(tags=["taskcenter"])
    assert [e.id for e in errors] == ["taskcenter.E_ACKS_LATE"]


def test_configuration_check_reports_a_broker_that_does_not_answer(db, tmp_path, redis_server, capsys):
    from tests.conftest import use_broker

    use_broker(f"redis+socket://{tmp_path}/absent.sock")
    try:
        with pytest.raises(CommandError, match="broker"):
            call_command("taskcenter_check")
    finally:
        use_broker(redis_server.url)
    assert "does not answer" in capsys.readouterr().out


@pytest.mark.django_db
def test_superuser_is_created_from_the_environment_once(monkeypatch, capsys):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "ops")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "s3cret-pass-word")
    call_command("taskcenter_ensure_superuser")
    call_command("taskcenter_ensure_superuser")
    user = get_user_model().objects.get(username="ops")
    assert user.is_superuser and user.check_password("s3cret-pass-word")
    assert "already exists" in capsys.readouterr().out


@pytest.mark.django_db
def test_without_environment_an_admin_with_a_generated_password_is_created_and_shown_once(monkeypatch, capsys):
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    call_command("taskcenter_ensure_superuser")
    first = capsys.readouterr().out
    password = first.split("password '")[1].split("'")[0]
    assert get_user_model().objects.get(username="admin").check_password(password)
    call_command("taskcenter_ensure_superuser")
    assert password not in capsys.readouterr().out


@pytest.mark.django_db
def test_username_without_password_is_an_error(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "ops")
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="DJANGO_SUPERUSER_PASSWORD is not"):
        call_command("taskcenter_ensure_superuser")
