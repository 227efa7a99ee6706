"""Logging, configured in one place: one sink, stderr (journald captures it) as text or JSON, or
a rotated text file (``run --log-file``: launchd and Task Scheduler keep no journal).

Every line may carry ``folder``, ``file`` and ``job`` (bound by the stages). Secrets registered with
``redact`` are replaced by ``[secure]`` in every message, whatever path they took into it.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_longest_first: tuple[str, ...] = ()  # what scrub replaces, read without the lock
REDACTED = "[secure]"
LOG_FILE_ROTATION = "10 MB"
LOG_FILE_RETENTION = 5  # rotated files kept beside the current one


def redact(*secrets: str | None) -> None:
    """Register values that must never appear in log output."""
    global _longest_first
    with _secrets_lock:
        _secrets.update(s for s in secrets if s and len(s) >= 4)
        _longest_first = tuple(sorted(_secrets, key=len, reverse=True))


def scrub(text: str) -> str:
    for secret in _longest_first:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


# Control characters (C0, DEL, C1) as visible escapes: a newline in a file name cannot start a
# forged log line, nor an escape sequence drive the terminal.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(32), *range(127, 160))}
_CONTROLS.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def escape(text: str) -> str:
    """``text`` on one printable line: control characters escaped, and the bytes of a name that
    is not UTF-8 (surrogate escapes) written as ``\\udcXX``."""
    if text.isprintable():  # no control character, no surrogate: nothing to escape
        return text
    text = text.translate(_CONTROLS)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _patch(record: Record) -> None:
    record["message"] = escape(scrub(record["message"]))
    for key, value in list(record["extra"].items()):
        if isinstance(value, str):
            record["extra"][key] = escape(scrub(value))
    if record["exception"] is not None:
        record["extra"]["_exc"] = True


def _context(record: Record) -> str:
    extra = record["extra"]
    parts = [f"{k}={extra[k]}" for k in ("folder", "file", "job") if extra.get(k)]
    return (" [" + " ".join(parts) + "]") if parts else ""


def _text_format(record: Record) -> str:
    record["extra"]["_ctx"] = _context(record).replace("{", "{{").replace("}", "}}")
    return "{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} {message}{extra[_ctx]}\n{exception}"


def _json_sink(message: Any) -> None:
    record = message.record
    line = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "message": record["message"],
    }
    for key in ("folder", "file", "job"):
        if record["extra"].get(key):
            line[key] = record["extra"][key]
    if record["exception"] is not None:
        line["exception"] = scrub(str(record["exception"].value))
    sys.stderr.write(json.dumps(line) + "\n")
    sys.stderr.flush()


def setup(log_format: str = "text", *, level: str = "INFO", log_file: Path | None = None) -> None:
    """Replace every sink with the one sink: stderr, or ``log_file`` (text, rotated) when given.
    Call once, from the CLI."""
    logger.remove()
    logger.configure(patcher=_patch)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        logger.add(log_file, level=level, format=_text_format, backtrace=False, diagnose=False,
                   rotation=LOG_FILE_ROTATION, retention=LOG_FILE_RETENTION, encoding="utf-8")
    elif log_format == "json":
        logger.add(_json_sink, level=level, backtrace=False, diagnose=False)
    elif sys.stderr is not None:  # None under pythonw, which the Windows task uses with a log file
        logger.add(_CurrentStderr(), level=level, format=_text_format, backtrace=False,
                   diagnose=False, colorize=sys.stderr.isatty())


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time: while ``run --once`` shows its progress
    bar, Rich puts a proxy there that prints each line above the bar instead of over it."""

    def write(self, text: str) -> None:
        sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()
