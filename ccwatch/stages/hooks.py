"""``on_done`` / ``on_failed``: a user's command run after a file is delivered or quarantined.

Commands run on a small pool of their own, never on a pipeline thread, with ``hook_timeout_s``.
What they need comes in environment variables: no shell and no placeholders in argv, so a file
name never becomes part of a command line; the variables holding our secrets are left out. A hook
that fails, times out or cannot start is logged and counted; the file's outcome stands either way.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

if TYPE_CHECKING:
    from ccwatch.ledger import Entry

WORKERS = 2
_OUTPUT_TAIL = 500  # characters of a failed hook's output worth a log line


class Hooks:
    def __init__(self, *, timeout_s: float, on_failure: Callable[[], None] = lambda: None,
                 hide: Sequence[str] = ()) -> None:
        self._timeout_s = timeout_s
        self._hide = frozenset(hide)  # environment variables holding our secrets
        self._pool = ThreadPoolExecutor(WORKERS, "ccwatch-hook")
        self._failed = on_failure
        self._lock = threading.Lock()
        self._pending: set[Future[None]] = set()

    def run(self, argv: Sequence[str], env: Mapping[str, str], *, folder: str, file: str) -> None:
        """Start ``argv`` soon, on the hook pool; returns at once."""
        if not argv:
            return
        try:
            future = self._pool.submit(self._run, tuple(argv), dict(env), folder, file)
        except RuntimeError:  # shutting down: a hook is a courtesy, not a guarantee
            logger.bind(folder=folder, file=file).warning("stopping; not running {}", argv[0])
            return
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _run(self, argv: tuple[str, ...], env: dict[str, str], folder: str, file: str) -> None:
        log = logger.bind(folder=folder, file=file)
        try:
            base = {k: v for k, v in os.environ.items() if k not in self._hide}
            done = subprocess.run(argv, env=base | env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, errors="replace",
                                  timeout=self._timeout_s, check=False)
        except subprocess.TimeoutExpired:
            self._failed()
            log.warning("hook {} killed after {:g} s (hook_timeout_s)", argv[0], self._timeout_s)
            return
        except OSError as exc:
            self._failed()
            log.warning("hook {} could not start: {}", argv[0], exc.strerror or exc)
            return
        if done.returncode != 0:
            self._failed()
            tail = (done.stderr or done.stdout).strip()[-_OUTPUT_TAIL:]
            log.warning("hook {} exited with {}{}", argv[0], done.returncode,
                        f": {tail}" if tail else "")
        else:
            log.debug("hook {} ran", argv[0])

    def close(self, grace_s: float) -> None:
        """Let queued and running hooks finish for up to ``grace_s``; drop what is left."""
        with self._lock:
            pending = set(self._pending)
        if pending:
            _, left = wait(pending, timeout=grace_s)
            if left:
                logger.warning("{} hook(s) not run or not finished at exit", len(left))
        self._pool.shutdown(wait=False, cancel_futures=True)


def _common(entry: Entry, source: Path, event: str) -> dict[str, str]:
    return {
        "CCWATCH_EVENT": event,
        "CCWATCH_FOLDER": entry.folder,
        "CCWATCH_INPUT": str(source),
        "CCWATCH_RELPATH": entry.relpath,
        "CCWATCH_JOB_ID": entry.job_id or "",
        "CCWATCH_TEMPLATE": entry.template,
    }


def after_done(runner: Hooks | None, argv: Sequence[str], entry: Entry, source: Path,
               outputs: Sequence[Path]) -> None:
    """Run ``on_done`` for a delivered file (``source``: where its input was; ``outputs``: the
    absolute paths written)."""
    if runner is None:
        return
    env = _common(entry, source, "done") | {
        "CCWATCH_OUTPUT": str(outputs[0]) if outputs else "",
        "CCWATCH_OUTPUTS": os.pathsep.join(str(o) for o in outputs),
    }
    runner.run(argv, env, folder=entry.folder, file=entry.relpath)


def after_failed(runner: Hooks | None, argv: Sequence[str], entry: Entry, source: Path,
                 record: Mapping[str, Any], moved_to: Path | None) -> None:
    """Run ``on_failed`` for a quarantined file (``moved_to``: None if it had vanished)."""
    if runner is None:
        return
    quarantined = str(moved_to) if moved_to else ""
    env = _common(entry, source, "failed") | {
        "CCWATCH_QUARANTINED": quarantined,
        "CCWATCH_ERROR_FILE": quarantined + ".error.json" if moved_to else "",
        "CCWATCH_ERROR": str(record.get("message") or ""),
        "CCWATCH_ERROR_CODE": str(record.get("code") or ""),
    }
    runner.run(argv, env, folder=entry.folder, file=entry.relpath)
