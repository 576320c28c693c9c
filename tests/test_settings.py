"""Settings are read from the environment once and refuse unsafe or inconsistent values."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_settings(**env) -> subprocess.CompletedProcess:
    """Import config.settings in a fresh interpreter with exactly these variables."""
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    clean["TASKCENTER_DOTENV"] = ""  # a developer's .env (make setup) must not change these checks
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", "import config.settings as s; print(s.TIME_ZONE, s.CELERY_BROKER_URL)"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_without_secret_key_stops_with_a_clear_message():
    result = load_settings(DEBUG="false", ALLOWED_HOSTS="tasks.example.com")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_production_without_allowed_hosts_stops_with_a_clear_message():
    result = load_settings(DEBUG="false", SECRET_KEY="x" * 50)
    assert result.returncode != 0
    assert "ALLOWED_HOSTS is not set" in result.stderr


def test_production_with_secret_and_hosts_starts():
    result = load_settings(DEBUG="false", SECRET_KEY="x" * 50, ALLOWED_HOSTS="tasks.example.com")
    assert result.returncode == 0, result.stderr


def test_development_defaults_use_shanghai_time_and_the_embedded_redis_socket(tmp_path):
    result = load_settings(DEBUG="true", TASKCENTER_STATE_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Asia/Shanghai", f"redis+socket://{tmp_path}/redis/redis.sock"]


def test_redis_url_replaces_the_embedded_server():
    result = load_settings(DEBUG="true", REDIS_URL="redis://redis.internal:6379/3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] == "redis://redis.internal:6379/3"


def test_soft_time_limit_must_be_below_the_hard_limit():
    result = load_settings(DEBUG="true", CELERY_TASK_TIME_LIMIT="60", CELERY_TASK_SOFT_TIME_LIMIT="60")
    assert result.returncode != 0
    assert "CELERY_TASK_SOFT_TIME_LIMIT (60s) must be below" in result.stderr


def test_visibility_timeout_must_exceed_the_longest_run():
    result = load_settings(DEBUG="true", CELERY_VISIBILITY_TIMEOUT="600", CELERY_TASK_TIME_LIMIT="600")
    assert result.returncode != 0
    assert "CELERY_VISIBILITY_TIMEOUT (600s) must exceed CELERY_TASK_TIME_LIMIT (600s)" in result.stderr


def test_a_countdown_may_be_longer_than_the_visibility_timeout():
    """Delayed runs wait in the scheduled set, not unacknowledged on a worker."""
    result = load_settings(DEBUG="true", CELERY_VISIBILITY_TIMEOUT="900", TASKCENTER_MAX_COUNTDOWN="86400")
    assert result.returncode == 0, result.stderr


def test_default_queue_must_be_a_configured_queue():
    result = load_settings(DEBUG="true", TASKCENTER_QUEUES="a,b", TASKCENTER_DEFAULT_QUEUE="c")
    assert result.returncode != 0
    assert "TASKCENTER_DEFAULT_QUEUE='c' must be one of" in result.stderr


def test_database_url_switches_to_postgresql():
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings as s; print(s.DATABASES['default']['ENGINE'])"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "DEBUG": "true", "DATABASE_URL": "postgres://u:p@db:5432/tc"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "django.db.backends.postgresql", result.stderr


@pytest.mark.sqlite_only  # the SQLite options; PostgreSQL's are checked below
def test_sqlite_is_tuned_for_concurrent_writers(settings):
    options = settings.DATABASES["default"]["OPTIONS"]
    assert options["transaction_mode"] == "IMMEDIATE"
    assert options["timeout"] >= 5
    assert "journal_mode=WAL" in options["init_command"]


@pytest.mark.postgresql_only
def test_postgresql_connections_are_kept_and_health_checked(settings):
    database = settings.DATABASES["default"]
    assert database["CONN_MAX_AGE"] == 60
    assert database["CONN_HEALTH_CHECKS"] is True


def test_every_celery_setting_is_a_real_celery_setting():
    """A CELERY_* name Celery does not know (e.g. CELERY_TASK_MAX_RETRIES) is silently ignored."""
    from celery.app.defaults import NAMESPACES, flatten
    from django.conf import settings

    known = {key for key, _ in flatten(NAMESPACES)}
    unknown = [name for name in dir(settings) if name.startswith("CELERY_") and name[7:].lower() not in known]
    assert unknown == []


@pytest.mark.parametrize("value", ["fast", "-1", "2"])
def test_event_flush_interval_that_is_not_seconds_between_0_and_1_is_refused_by_name(value):
    result = load_settings(DEBUG="true", TASKCENTER_WORKER_EVENT_FLUSH_SECONDS=value)
    assert result.returncode != 0
    assert "TASKCENTER_WORKER_EVENT_FLUSH_SECONDS must be a number of seconds between 0 and 1" in result.stderr


def test_a_message_lost_by_a_killed_worker_is_sent_again_within_a_minute_by_default(settings):
    """Two searches in a row must miss a run's message before the monitor sends it again (issue 10: a dead
    worker's runs run again within 60 s)."""
    from taskcenter.monitor.runner import Monitor

    assert 2 * settings.TASKCENTER_MONITOR_LOST_CHECK_INTERVAL <= 45
    settings.TASKCENTER_MONITOR_LOST_CHECK_INTERVAL = 7
    assert Monitor().lost_check_interval == 7
