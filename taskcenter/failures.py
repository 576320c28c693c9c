"""Failure fingerprints: which failures are "the same error", from a task name, exception and traceback.

Two failures share a fingerprint when they come from the same task, raise the
same exception class, and their innermost ``FINGERPRINT_FRAMES`` frames are in
the same files and functions. Line numbers, messages, ids and memory addresses
do not count, so an error keeps its group across deploys that move lines and
across arguments that change the message. File paths are cut to their last two
parts, so the same code installed in another directory groups the same way.
"""

import hashlib
import re
from dataclasses import dataclass

#: Innermost frames of the traceback that say where an error was raised.
FINGERPRINT_FRAMES = 3
#: Longest exception type and location kept (characters).
TYPE_LENGTH, LOCATION_LENGTH = 255, 500

_FRAME = re.compile(r'^\s*File "(?P<file>[^"]*)", line \d+, in (?P<function>.+?)\s*$')
_LAST_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::|$)")
_REPR_TYPE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)\(")
_TRACEBACK_START = "Traceback (most recent call last):"


@dataclass(frozen=True)
class Fingerprint:
    value: str  # 40 hex digits
    exception_type: str
    location: str  # innermost frames, outermost first: "path/file.py:function > ..."


def _short_path(path: str) -> str:
    parts = [part for part in re.split(r"[\\/]", path) if part]
    return "/".join(parts[-2:])


def _last_block(traceback: str) -> list[str]:
    """The lines of the last traceback in ``traceback`` (the exception raised, after any chained ones)."""
    lines = traceback.splitlines()
    starts = [index for index, line in enumerate(lines) if line.strip() == _TRACEBACK_START]
    return lines[starts[-1] :] if starts else lines


def exception_type_of(exception: str, traceback: str) -> str:
    """The exception's class name, from the traceback's exception line or else from its repr."""
    block = _last_block(traceback or "")
    # The exception line is the first one after the header that is not indented (frames and code are).
    for line in block[1:] if block and block[0].strip() == _TRACEBACK_START else []:
        if line and not line[0].isspace():
            match = _LAST_LINE.match(line)
            if match:
                return match["type"][:TYPE_LENGTH]
            break
    match = _REPR_TYPE.match((exception or "").strip())
    return match["type"][:TYPE_LENGTH] if match else "UnknownError"


def frames_of(traceback: str) -> list[str]:
    """``file:function`` of each frame of the last traceback, outermost first."""
    frames = []
    for line in _last_block(traceback or ""):
        match = _FRAME.match(line)
        if match:
            frames.append(f"{_short_path(match['file'])}:{match['function']}")
    return frames


def failure_fingerprint(*, task_name: str, exception: str, traceback: str) -> Fingerprint:
    """Fingerprint one failure of ``task_name`` (exception repr and formatted traceback, as Celery's events carry)."""
    exception_type = exception_type_of(exception, traceback)
    location = " > ".join(frames_of(traceback)[-FINGERPRINT_FRAMES:])[:LOCATION_LENGTH]
    digest = hashlib.sha1("\n".join([task_name, exception_type, location]).encode(), usedforsecurity=False)
    return Fingerprint(value=digest.hexdigest(), exception_type=exception_type, location=location)
