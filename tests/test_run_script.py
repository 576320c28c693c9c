"""`bin/run` (what `make run` starts): embedded Redis, web, worker and beat, all stopped by Ctrl-C."""

import os
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


def test_run_serves_the_app_and_ctrl_c_stops_every_process_including_redis(tmp_path):
    state_dir = tmp_path / "state"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL", "DATABASE_URL")}
    env.update(DEBUG="true", TASKCENTER_STATE_DIR=str(state_dir), PORT=str(port), WEB_CONCURRENCY="1")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)

    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115
    run = subprocess.Popen(
        ["bin/run"], cwd=ROOT, env=dict(env, VENV=str(Path(sys.executable).parent.parent)),
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:

        def login_page_answers():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return run.poll() is not None and pytest.fail((tmp_path / "run.log").read_text())

        wait_for(login_page_answers, timeout=60, message="the web process to serve /login/")
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
    assert not (state_dir / "redis" / "redis.sock").exists()
