"""A plain shell: `make setup` writes a .env that manage.py reads; production still needs SECRET_KEY."""

import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def plain_shell(tmp_path, **env) -> dict:
    """A shell's environment: no DEBUG, no SECRET_KEY, nothing the Makefile exports."""
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    clean.update(TASKCENTER_STATE_DIR=str(tmp_path / "state"), **env)
    return clean


def manage(tmp_path, *args, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=plain_shell(tmp_path, **env),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def write_dev_env(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "bin/dev-env", str(path)], cwd=ROOT, capture_output=True, text=True)


def test_manage_py_works_from_a_plain_shell_after_setup_wrote_the_env(tmp_path):
    dotenv = tmp_path / ".env"
    assert write_dev_env(dotenv).returncode == 0
    text = dotenv.read_text()
    assert "DEBUG=true\n" in text and "\nSECRET_KEY=dev-" in text
    assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600  # a secret: readable by its owner only

    result = manage(tmp_path, "check", TASKCENTER_DOTENV=str(dotenv))
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_the_env_is_never_overwritten(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("DEBUG=true\nSECRET_KEY=mine\n")
    assert write_dev_env(dotenv).returncode == 0
    assert dotenv.read_text() == "DEBUG=true\nSECRET_KEY=mine\n"


def test_variables_set_in_the_environment_win_over_the_env(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("# comment\nexport DEBUG=true\nSECRET_KEY='from-dotenv'\nTIME_ZONE_UNUSED=x\n")
    code = "import config.settings as s; print(s.DEBUG, s.SECRET_KEY)"
    env = plain_shell(tmp_path, TASKCENTER_DOTENV=str(dotenv))
    run = lambda **more: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code], cwd=ROOT, env={**env, **more}, capture_output=True, text=True, timeout=60
    )
    assert run().stdout.split() == ["True", "from-dotenv"]
    assert run(SECRET_KEY="from-environment").stdout.split() == ["True", "from-environment"]


def test_production_without_a_env_still_refuses_to_start_without_secret_key(tmp_path):
    result = manage(tmp_path, "check", TASKCENTER_DOTENV=str(tmp_path / "none"), ALLOWED_HOSTS="tasks.example.com")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_make_setup_writes_the_git_ignored_env_and_make_manage_runs_a_command():
    dry_run = subprocess.run(
        ["make", "-n", "setup", "manage", "ARGS=createsuperuser", "VENV=.venv-dry"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert ".venv-dry/bin/python bin/dev-env .env" in dry_run.stdout
    assert ".venv-dry/bin/python manage.py createsuperuser" in dry_run.stdout
    assert subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT).returncode == 0
