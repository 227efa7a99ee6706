"""Every error ccwatch raises, and what the pipeline does with each.

::

    CcwatchError                     root; carries code, http_status, job_id, task and path
    ├── ConfigError                  refuse to start, exit 2; names the key (folders[1].rules[0].template)
    ├── AccountError                 401, 403, 402: pause submissions, probe, resume; exit 3 (check, --once)
    ├── TransientError               transport errors, timeouts, 5xx, 429: retry with backoff, keep the state
    │   ├── RateLimited              429 with the server's Retry-After: hold every submission
    │   │   └── CreateRateLimited        a job create's 429: the create pacer has it, nothing else waits
    │   ├── LedgerUnavailable        the shared ledger's database is unreachable: back off, reconnect
    │   ├── FormRefused              the storage host refused an upload form (403): renew the form or the job
    │   └── FolderUnavailable        a root is missing or on another device than at start: wait
    ├── FileError                    this file cannot be converted: quarantine it
    │   └── OutputGone               an export vanished (404/403 on download after retries)
    ├── FileVanished                 the file changed or went away: forget that version (not a failure)
    └── ClaimLost                    another host took this file over (our lease expired): let it go

    IllegalTransition (RuntimeError) a bug, not a condition of the file: a ledger state write that
                                     ``ledger.TRANSITIONS`` forbids; nothing is written, and the
                                     pipeline's boundary logs it whole like any unexpected error

Foreign exceptions (httpx, OSError from the API client) are translated into this tree at one boundary,
``ccwatch.client.api``; everything else branches on these classes only.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any


class ExitCode(enum.IntEnum):
    OK = 0
    FILES_FAILED = 1
    CONFIG = 2
    ACCOUNT = 3
    INTERRUPTED = 130  # Ctrl-C: the shell's 128 + SIGINT


class CcwatchError(Exception):
    """Root of the tree. ``str(err)`` is the one-line message for people."""

    exit_code = ExitCode.FILES_FAILED

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        http_status: int | None = None,
        job_id: str | None = None,
        task: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status
        self.job_id = job_id
        self.task = task
        self.path = path


class ConfigError(CcwatchError):
    """The configuration cannot run: the daemon refuses to start."""

    exit_code = ExitCode.CONFIG

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem, code="CONFIG")
        self.key = key
        self.problem = problem


class AccountError(CcwatchError):
    """The account cannot submit now (auth, scope, credits): nobody's file is to blame."""

    exit_code = ExitCode.ACCOUNT


class TransientError(CcwatchError):
    """Worth trying again later; the file keeps its ledger state."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.retry_after_s = retry_after_s


class RateLimited(TransientError):
    """HTTP 429: wait at least ``retry_after_s``."""


class CreateRateLimited(RateLimited):
    """HTTP 429 to a job create, told to the create pacer (``ccwatch.pipeline.pacing``): it holds
    creation until ``retry_after_s`` has passed and learns the window from it. Creates count in
    their own window, so nothing else need wait."""


class FolderUnavailable(TransientError):
    """A configured folder is missing or on another filesystem than at start (an unmounted share):
    nothing is written or moved there; its files wait, without counting towards give-up."""

    def __init__(self, root: Path, problem: str) -> None:
        super().__init__(f"{root} is unavailable: {problem}", code="FOLDER_UNAVAILABLE")
        self.root = root
        self.problem = problem


class FormRefused(TransientError):
    """The storage host answered 403 to an upload: the form expired or is no longer valid.

    A problem of that file's job, never of the account: the submit stage re-reads the task for a
    fresh form, else recreates the job.
    """

    def __init__(self, message: str, *, form: dict[str, Any] | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.form = form  # the refused one, so a re-read can tell a renewed form from it


class FileError(CcwatchError):
    """This file cannot be converted: it goes to quarantine with the message."""


class OutputGone(FileError):
    """An export URL answered 404/403 after retries: the output is lost on the server side."""


class FileVanished(CcwatchError):
    """The file changed or was removed before its outputs were delivered: drop that version
    quietly (one INFO line, its message); a newer version is converted as a file of its own."""


class TooManyRedirects(OSError):
    """Raised by ``ccwatch.client.wire`` when an answer redirects past its limit (a network error)."""


class IllegalTransition(RuntimeError):
    """A ledger state write the transition table forbids (``done → uploading``): a bug."""

    def __init__(self, entry_id: int, current: str, target: str) -> None:
        super().__init__(f"ledger entry {entry_id}: {current} → {target} is not an allowed transition")
        self.entry_id = entry_id
        self.current = current
        self.target = target


class LedgerUnavailable(TransientError):
    """The shared ledger's database cannot be reached; nothing is done until it can."""


class ClaimLost(CcwatchError):
    """Another host holds this file now: this host stops working on it, without a trace."""
