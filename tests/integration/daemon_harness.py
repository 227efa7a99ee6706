"""Helpers for daemon tests (imported by the integration and system tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ccwatch.config import Config
from ccwatch.daemon import Daemon, open_runtime, run_once
from ccwatch.errors import ExitCode


@dataclass
class Dirs:
    root: Path
    input: Path
    output: Path
    quarantine: Path
    state: Path


MakeConfig = Callable[..., Config]


def once(cfg: Config) -> tuple[ExitCode, int, int]:
    """``run --once`` in-process: (exit code, delivered, failed)."""
    with open_runtime(cfg) as runtime:
        code = run_once(runtime)
        return code, runtime.pipeline.delivered, runtime.pipeline.failed


@contextmanager
def running(cfg: Config) -> Iterator[Daemon]:
    """A daemon on a thread (no signal handlers), stopped and drained on exit."""
    with open_runtime(cfg) as runtime:
        daemon = Daemon(runtime)
        errors: list[BaseException] = []

        def target() -> None:
            try:
                daemon.run()
            except BaseException as exc:  # surfaced to the test below
                errors.append(exc)

        thread = threading.Thread(target=target, name="test-daemon", daemon=True)
        thread.start()
        try:
            yield daemon
        finally:
            daemon.stop_event.set()
            thread.join(30)
        assert not thread.is_alive(), "daemon did not stop"
        if errors:
            raise errors[0]


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
