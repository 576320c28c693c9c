"""The deployment files: systemd units in deploy/systemd (checked by ``systemd-analyze verify``
where it is installed, and parsed here either way), their example environment, and the
production security settings ``manage.py check --deploy`` asks for.
"""

import configparser
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import CeleryProcess, _database_url, wait_for
from tests.test_settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
ENV_EXAMPLE = UNITS / "taskcenter.env.example"
#: Where the units expect the checkout, its virtualenv and the environment files.
APP, VENV_BIN, ETC = "/opt/taskcenter", "/opt/taskcenter/.venv/bin/", "/etc/taskcenter/"
#: Variables the units themselves read (not settings): documented in docs/deploy.md.
UNIT_VARIABLES = {"WEB_BIND", "WEB_CONCURRENCY", "WORKER_QUEUES"}
LONG_RUNNING = [
    "taskcenter-web.service",
    "taskcenter-worker@.service",
    "taskcenter-beat.service",
    "taskcenter-monitor.service",
]


class _Repeated(dict):
    """Section storage that keeps every value of a repeated key (ExecStart=, EnvironmentFile=)."""

    def __setitem__(self, key, value):
        if key in self and isinstance(value, list):
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def read_unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None, dict_type=_Repeated, delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive
    parser.read(UNITS / name)
    return parser


def values(unit, section: str, key: str) -> list[str]:
    return [v for v in unit.get(section, key, fallback="").split("\n") if v]


def env_example() -> dict:
    env = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def installed_copy(folder: Path) -> list[Path]:
    """The units with the checkout, its virtualenv and the environment files where this test runs them."""
    etc = folder / "etc"
    etc.mkdir()
    shutil.copy(ENV_EXAMPLE, etc / "taskcenter.env")
    copies = []
    for unit in sorted(UNITS.glob("taskcenter*.service")) + sorted(UNITS.glob("*.target")):
        text = unit.read_text().replace(VENV_BIN, f"{Path(sys.executable).parent}/")
        text = text.replace(ETC, f"{etc}/").replace(APP, str(ROOT))
        # A template is verified through one of its instances.
        name = unit.name.replace("@.", "@low.")
        (folder / name).write_text(text)
        copies.append(folder / name)
    return copies


def test_every_process_has_a_unit_that_restarts_it_and_stops_it_gently():
    for name in LONG_RUNNING:
        unit = read_unit(name)
        assert {"Unit", "Service", "Install"} <= set(unit.sections()), name
        service = unit["Service"]
        assert service["Restart"] == "always", name
        assert service["KillSignal"] == "SIGTERM", name
        assert int(service["TimeoutStopSec"]) >= 30, name
        assert service["User"] == "taskcenter" and service["WorkingDirectory"] == APP, name
        assert values(unit, "Service", "EnvironmentFile")[0] == f"{ETC}taskcenter.env", name
        assert unit["Install"]["WantedBy"] == "taskcenter.target", name


def test_worker_stops_warm_and_waits_longer_than_the_longest_task(settings):
    """SIGTERM to the Celery parent alone, which waits for running tasks; the children would die at once."""
    service = read_unit("taskcenter-worker@.service")["Service"]
    assert service["KillMode"] == "mixed"
    assert int(service["TimeoutStopSec"]) > settings.CELERY_TASK_TIME_LIMIT
    assert "--hostname=%i@%H" in service["ExecStart"]  # unique per host and per queue set
    assert "-Q ${WORKER_QUEUES}" in service["ExecStart"]


def test_every_exec_start_runs_a_real_command():
    from django.core.management import get_commands

    commands = get_commands()
    for unit_path in sorted(UNITS.glob("*.service")):
        for line in values(read_unit(unit_path.name), "Service", "ExecStart"):
            argv = shlex.split(line)
            assert argv[0].startswith(VENV_BIN), line
            program = Path(sys.executable).parent / argv[0].removeprefix(VENV_BIN)
            assert os.access(program, os.X_OK), f"{unit_path.name}: {program} is not installed"
            if argv[1:2] == ["manage.py"]:
                assert argv[2] in commands, f"{unit_path.name}: no manage.py command {argv[2]}"
            elif argv[0].endswith("/celery"):
                assert argv[1:4] == ["-A", "config", argv[3]] and argv[3] in ("worker", "beat"), line
            else:
                assert argv[0].endswith("/gunicorn") and argv[1] == "config.wsgi:application", line


def test_release_unit_migrates_collects_static_files_and_checks():
    lines = values(read_unit("taskcenter-release.service"), "Service", "ExecStart")
    assert [shlex.split(line)[2] for line in lines] == ["migrate", "collectstatic", "taskcenter_check"]


def test_units_pass_systemd_analyze_verify(tmp_path):
    found = shutil.which("systemd-analyze")
    if not found:
        pytest.skip("systemd-analyze is not installed (Debian's systemd package); the parser tests above still ran")
    copies = installed_copy(tmp_path)
    result = subprocess.run(
        [found, "verify", "--man=no", *map(str, copies)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    # Unknown keys and bad values are only warnings (exit status 0): any output is a failure.
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path):
    """The check above would see a typo or a missing program."""
    found = shutil.which("systemd-analyze")
    if not found:
        pytest.skip("systemd-analyze is not installed")
    copies = installed_copy(tmp_path)
    beat = next(path for path in copies if path.name == "taskcenter-beat.service")
    beat.write_text(beat.read_text().replace("KillSignal=", "KilSignal=").replace("/celery ", "/celeryy "))
    result = subprocess.run([found, "verify", "--man=no", str(beat)], capture_output=True, text=True, timeout=60)
    assert "Unknown key 'KilSignal'" in result.stderr
    assert "celeryy is not executable" in result.stderr


def test_example_environment_names_only_documented_variables():
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_][A-Z0-9_]*)`", readme, flags=re.MULTILINE))
    assert set(env_example()) - documented - UNIT_VARIABLES == set()
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    assert all(f"`{name}`" in deploy for name in UNIT_VARIABLES)


# --- Security settings ---------------------------------------------------------------------


def manage_check_deploy(tmp_path, redis_server, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    clean.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        TASKCENTER_STATE_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path}/check.sqlite3",
        REDIS_URL=redis_server.url,
        SECRET_KEY=secrets.token_urlsafe(60),
        **env,
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_check_deploy_passes_with_the_example_environment(tmp_path, redis_server):
    env = {k: v for k, v in env_example().items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    result = manage_check_deploy(tmp_path, redis_server, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_asks_for_hsts_and_ssl_redirect_without_them(tmp_path, redis_server):
    result = manage_check_deploy(tmp_path, redis_server, DEBUG="false", ALLOWED_HOSTS="tasks.example.com")
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W008" in result.stderr


def test_proxy_header_is_read_as_a_header_name_and_value():
    script = (
        "import config.settings as s; print(s.SECURE_PROXY_SSL_HEADER, s.SECURE_HSTS_SECONDS, s.SECURE_SSL_REDIRECT)"  # noqa: E501
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ["PATH"], "DEBUG": "true", "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
             "SECURE_HSTS_SECONDS": "3600", "SECURE_SSL_REDIRECT": "yes"},
    )  # fmt: skip
    assert result.stdout.strip() == "('HTTP_X_FORWARDED_PROTO', 'https') 3600 True", result.stderr


def test_a_malformed_proxy_header_stops_start_up_with_its_name():
    result = load_settings(DEBUG="true", SECURE_PROXY_SSL_HEADER="X Forwarded Proto")
    assert result.returncode != 0
    assert "SECURE_PROXY_SSL_HEADER='X Forwarded Proto'" in result.stderr


def test_a_sentinel_broker_url_needs_the_master_name():
    url = "sentinel://sentinel1:26379;sentinel://sentinel2:26379"
    assert "REDIS_SENTINEL_MASTER" in load_settings(DEBUG="true", REDIS_URL=url).stderr
    assert load_settings(DEBUG="true", REDIS_URL=url, REDIS_SENTINEL_MASTER="taskcenter").returncode == 0


def test_a_sentinel_password_goes_to_the_sentinels_only():
    script = "import config.settings as s; o = s.CELERY_BROKER_TRANSPORT_OPTIONS; print(o['master_name'], o['sentinel_kwargs']['password'])"  # noqa: E501
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ["PATH"], "DEBUG": "true", "REDIS_URL": "sentinel://:master-pw@s1:26379",
             "REDIS_SENTINEL_MASTER": "taskcenter", "REDIS_SENTINEL_PASSWORD": "sentinel-pw"},
    )  # fmt: skip
    assert result.stdout.split() == ["taskcenter", "sentinel-pw"], result.stderr


def test_a_cache_url_of_another_kind_stops_start_up():
    result = load_settings(DEBUG="true", TASKCENTER_CACHE_URL="memcached://cache:11211")
    assert result.returncode != 0
    assert "TASKCENTER_CACHE_URL must start with redis://" in result.stderr


def test_a_shared_cache_that_does_not_answer_leaves_the_api_answering(db, settings, tmp_path, caplog):
    from tests.api_support import make_user, token_client

    settings.TASKCENTER_API_RATE = "2/min"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"unix://{tmp_path}/no-redis.sock",
            "OPTIONS": {"socket_timeout": 0.4, "socket_connect_timeout": 0.4},
        }
    }
    client = token_client(make_user("viewer"))
    started = time.monotonic()
    assert [client.get("/api/v1/catalogue/").status_code for _ in range(3)] == [200, 200, 200]
    assert time.monotonic() - started < 5
    assert "rate limit not applied: the cache does not answer" in caplog.text


# --- The units' command lines, run for real ------------------------------------------------


def unit_environment(name: str, instance: str = "") -> dict:
    """What systemd gives the unit's commands: its Environment= defaults, then its environment files."""
    unit = read_unit(name)
    env = {}
    for line in values(unit, "Service", "Environment"):
        env.update(item.split("=", 1) for item in shlex.split(line))
    env.update(env_example())
    if "worker-%i.env" in unit.get("Service", "EnvironmentFile"):
        for line in (UNITS / f"worker-{instance}.env.example").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                key, _, value = line.partition("=")
                env[key.strip()] = value.strip()
    return env


def exec_start(name: str, env: dict, *, instance: str = "") -> list[str]:
    """The unit's ExecStart as systemd would run it: specifiers, then ${VAR} replaced; our virtualenv."""
    line = values(read_unit(name), "Service", "ExecStart")[0]
    line = line.replace("%i", instance).replace("%H", socket.gethostname())
    line = re.sub(r"\$\{(\w+)\}", lambda match: env[match.group(1)], line)
    argv = shlex.split(line)
    return [str(Path(sys.executable).parent / argv[0].removeprefix(VENV_BIN)), *argv[1:]]


def test_every_variable_of_a_command_line_has_a_default_in_its_unit():
    """A variable missing from the environment file must not leave an empty argument."""
    for unit_path in sorted(UNITS.glob("*.service")):
        unit = read_unit(unit_path.name)
        defaults = {
            item.split("=", 1)[0] for line in values(unit, "Service", "Environment") for item in shlex.split(line)
        }
        used = set(re.findall(r"\$\{(\w+)\}", unit.get("Service", "ExecStart")))
        assert used <= defaults, (unit_path.name, used - defaults)


@pytest.mark.e2e
@pytest.mark.slow
def test_the_worker_and_web_units_command_lines_start_and_serve(
    transactional_db, private_broker, private_redis, tmp_path
):
    """With the example environment (DEBUG off, HTTPS settings on), pointed at this test's Redis and database."""
    from celery import current_app

    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    bind = f"127.0.0.1:{port.getsockname()[1]}"
    port.close()
    local = {
        "DATABASE_URL": _database_url(), "REDIS_URL": private_redis.url, "SECRET_KEY": secrets.token_urlsafe(60),
        "TASKCENTER_CACHE_URL": f"unix://{private_redis.socket}", "TASKCENTER_STATE_DIR": str(tmp_path),
        "WEB_BIND": bind, "PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1",
    }  # fmt: skip
    started = []
    try:
        env = {**unit_environment("taskcenter-worker@.service", "low"), **local}
        argv = exec_start("taskcenter-worker@.service", env, instance="low")
        started.append(CeleryProcess("unit-worker-low", argv[1:], env, program=("-m", "celery")))
        env = {**unit_environment("taskcenter-web.service"), **local}
        argv = exec_start("taskcenter-web.service", env)
        started.append(CeleryProcess("unit-web", argv[1:], env, program=("-m", "gunicorn")))

        hostname = f"low@{socket.gethostname()}"
        wait_for(lambda: current_app.control.ping(destination=[hostname], timeout=1), timeout=120, message=hostname)
        queues = current_app.control.inspect(destination=[hostname], timeout=2).active_queues()[hostname]
        assert [queue["name"] for queue in queues] == ["low"]

        def healthz():
            request = urllib.request.Request(
                f"http://{bind}/healthz", headers={"Host": "tasks.example.com", "X-Forwarded-Proto": "https"}
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (local test server)
                    return response.status == 200 and response.headers
            except OSError:
                return False

        headers = wait_for(healthz, timeout=120, interval=0.5, message="gunicorn to serve /healthz")
        assert "max-age=31536000" in headers["Strict-Transport-Security"]  # over HTTPS, as the proxy says
    finally:
        for process in started:
            process.stop(timeout=30)
