"""Every process logs one line format, stamped with the UTC offset, each record once and whole."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\+0000"


def run_python(code: str, tmp_path, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    clean.update(DEBUG="true", TASKCENTER_DOTENV="", TASKCENTER_STATE_DIR=str(tmp_path), PYTHONPATH=str(ROOT), **env)
    clean.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def test_a_not_found_request_is_logged_once_with_the_utc_offset(tmp_path):
    result = run_python(
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "print(Client().get('/no-such-page-x/', HTTP_HOST='localhost').status_code)\n",
        tmp_path,
    )
    assert result.stdout.strip() == "404", result.stderr
    lines = [line for line in result.stderr.splitlines() if "/no-such-page-x/" in line]
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(STAMP + r" WARNING django\.request: Not Found: /no-such-page-x/", lines[0]), lines


BEAT_LOGGING = """
import logging, sys, threading, traceback
from config.celery import app
app.loader.import_default_modules()
# What `celery beat` and `celery worker` do at start: set up logging, redirect stdout and stderr.
app.log.setup(loglevel="INFO", redirect_stdouts=True, redirect_level="WARNING")
try:
    {}["schedule"]
except KeyError:
    logging.getLogger("celery.beat").exception("Schedule boom could not be evaluated")
    traceback.print_exc()  # what a thread or logging's own error handler writes to stderr
logging.getLogger("taskcenter.scheduler").info("beat ready")
"""


def test_celery_logs_a_traceback_as_one_record_in_the_project_format(tmp_path):
    result = run_python(BEAT_LOGGING, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    stamped = [line for line in lines if re.match(STAMP, line)]
    # Two records; the traceback lines (written once by logging, once to stderr) carry no stamp of their own.
    assert [re.sub(STAMP + " ", "", line) for line in stamped] == [
        "ERROR celery.beat: Schedule boom could not be evaluated",
        "INFO taskcenter.scheduler: beat ready",
    ], result.stderr
    start = lines.index(stamped[0])
    assert lines[start + 1] == "Traceback (most recent call last):"
    assert lines.count("KeyError: 'schedule'") == 2
    assert "celery.redirected" not in result.stderr and "WARNING/MainProcess" not in result.stderr


def test_gunicorn_uses_the_same_format():
    from config import gunicorn as gunicorn_config

    formatter = gunicorn_config.logconfig_dict["formatters"]["generic"]
    assert formatter["()"] == "taskcenter.log_format.OffsetFormatter"
    assert "%(t)s" not in gunicorn_config.access_log_format  # the line's stamp says when
    loggers = gunicorn_config.logconfig_dict["loggers"]
    assert not loggers["gunicorn.error"]["propagate"] and not loggers["gunicorn.access"]["propagate"]  # once
    assert "-c config/gunicorn.py" in (ROOT / "Procfile").read_text()
    assert "--config config/gunicorn.py" in (ROOT / "deploy/systemd/taskcenter-web.service").read_text()


def test_a_task_logger_line_names_its_run_and_other_lines_do_not():
    import io
    import logging

    from celery import Celery
    from celery.utils.log import get_task_logger

    from taskcenter.log_format import LOG_FORMAT, OffsetFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OffsetFormatter(LOG_FORMAT))
    task_log, plain_log = get_task_logger("tests.format.task"), logging.getLogger("tests.format.plain")
    for logger in (task_log, plain_log):
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    app = Celery("format-test", set_as_current=False)

    @app.task(name="tests.say")
    def say():
        task_log.info("from the task")
        plain_log.info("from a library")

    try:
        say.apply(task_id="run-1")
        task_log.info("outside a run")
    finally:
        for logger in (task_log, plain_log):
            logger.removeHandler(handler)
    lines = [re.sub(STAMP + " ", "", line) for line in stream.getvalue().splitlines()]
    assert lines == [
        "INFO tests.format.task: tests.say[run-1]: from the task",
        "INFO tests.format.plain: from a library",
        "INFO tests.format.task: outside a run",
    ]
