"""`bin/run` (what `make run` starts): embedded Redis, web, worker and beat, all stopped by Ctrl-C."""

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline or text in environ:
            found.append(int(entry.name))
    return found


def prepare(tmp_path) -> tuple[Path, int, dict]:
    """A state folder with a migrated database, a free port, and the environment of `make run`."""
    state_dir = tmp_path / "state"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL", "DATABASE_URL")}
    env.update(DEBUG="true", TASKCENTER_STATE_DIR=str(state_dir), PORT=str(port), WEB_CONCURRENCY="1")
    env.update(VENV=str(Path(sys.executable).parent.parent))
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    return state_dir, port, env


def wait_until_served(run, port: int, log_path: Path) -> None:
    def login_page_answers():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2) as response:
                return response.status == 200
        except OSError:
            return run.poll() is not None and pytest.fail(log_path.read_text())

    wait_for(login_page_answers, timeout=60, message="the web process to serve /login/")


def test_run_serves_the_app_and_ctrl_c_stops_every_process_including_redis_with_no_error(tmp_path):
    state_dir, port, env = prepare(tmp_path)

    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115
    # Through make, as `make run` does (its setup step left out): make reports a recipe that
    # exits non-zero ("make: *** [...] Error 130"), so bin/run must end with 0 after Ctrl-C.
    makefile = tmp_path / "Makefile"
    makefile.write_text("run:\n\tbin/run\n")
    run = subprocess.Popen(
        ["make", "--no-print-directory", "-f", str(makefile), "run"], cwd=ROOT, env=env,
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )  # fmt: skip
    try:
        wait_until_served(run, port, tmp_path / "run.log")
        assert (state_dir / "redis" / "redis.sock").is_socket()
        assert (state_dir / "redis" / "appendonlydir").is_dir()  # append-only persistence on
        wait_for(lambda: "taskcenter worker" in (tmp_path / "run.log").read_text(), timeout=60, message="the worker")
        assert processes_mentioning(str(state_dir)), "no process of the run was found"
    finally:
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        run.wait(timeout=60)
        log.close()

    wait_for(lambda: not processes_mentioning(str(state_dir)), timeout=30, message="every process to stop")
    output = (tmp_path / "run.log").read_text()
    assert f"http://127.0.0.1:{port}" in output
    assert "Stopping embedded Redis" in output
    assert "taskcenter stopped" in output  # bin/run ended with status 0 ...
    assert "make: ***" not in output  # ... so make reports no error ("Error 130")

    # Every process logs one format, UTC with its offset, each line once.
    stamps = re.findall(r"^\S+ (?:web|worker|beat|monitor)\.1 +\| (\d{4}-\d\d-\d\d \S+) ", output, re.MULTILINE)
    assert stamps and all(re.fullmatch(r"\d\d:\d\d:\d\d,\d{3}\+0000", stamp.split()[1]) for stamp in stamps)
    for line in ("gunicorn.error: Booting worker", "gunicorn.access: 127.0.0.1", "celery.beat: beat: Starting"):
        assert f"INFO {line}" in output, line
    assert output.count("INFO gunicorn.error: Booting worker") == 1  # WEB_CONCURRENCY=1
    assert not (state_dir / "redis" / "redis.sock").exists()


def test_sigterm_to_the_run_script_alone_stops_every_process_and_exits_0(tmp_path):
    """A supervisor signals bin/run only, not its process group: honcho must hear it too."""
    state_dir, port, env = prepare(tmp_path)
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115
    run = subprocess.Popen(["bin/run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_served(run, port, tmp_path / "run.log")
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 0, (tmp_path / "run.log").read_text()
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        log.close()
    wait_for(lambda: not processes_mentioning(str(state_dir)), timeout=30, message="every process to stop")
    assert "taskcenter stopped" in (tmp_path / "run.log").read_text()
