"""Child processes measured from outside: their own CPU (``wait4``) and peak RSS (VmHWM), their
output in a log file; and a reference loop that gauges the machine's speed at the time."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Usage:
    """A finished child's own figures (``wait4``: this process only, not the bench)."""

    returncode: int
    wall_s: float
    cpu_s: float
    maxrss_mb: float


class Child:
    """A subprocess whose output goes to a log file and whose resource use is read at exit."""

    def __init__(self, args: Sequence[str], log_path: Path, *, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.log_path = log_path
        self.args = [str(a) for a in args]
        self._log = log_path.open("wb")
        child_env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        child_env.update(env or {})
        self.started = time.monotonic()
        self.proc = subprocess.Popen(list(args), stdout=self._log, stderr=subprocess.STDOUT,
                                     env=child_env, cwd=cwd)
        self.usage: Usage | None = None
        self._hwm_kib = 0
        threading.Thread(target=self._sample_hwm, name="bench-hwm", daemon=True).start()

    def _sample_hwm(self) -> None:
        """The child's own peak RSS (VmHWM of its address space), read until it exits.

        ``wait4``'s ru_maxrss cannot be used for it: Linux counts the address space the child
        was spawned from (the bench process, vfork) before its exec, so it reports the bench's
        size whenever that is larger."""
        status = Path(f"/proc/{self.proc.pid}/status")
        while self.usage is None:
            try:
                text = status.read_text()
            except OSError:
                return
            found = re.search(r"^VmHWM:\s+(\d+) kB", text, re.MULTILINE)
            if found is None:  # a zombie: its memory is gone, the last reading stands
                return
            self._hwm_kib = max(self._hwm_kib, int(found.group(1)))
            time.sleep(0.01)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def terminate(self) -> None:
        if self.usage is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> Usage:
        """Reap the child with ``wait4`` (its own CPU and peak RSS); kill it at the deadline."""
        if self.usage is not None:
            return self.usage
        deadline = time.monotonic() + timeout_s
        while True:
            pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                self.proc.kill()
                pid, status, rusage = os.wait4(self.proc.pid, 0)
                self._finish(status, rusage)
                raise BenchError(f"{' '.join(self.args)} did not finish within {timeout_s} s; "
                                 f"its log ends:\n{self.log_tail()}")
            time.sleep(0.02)
        return self._finish(status, rusage)

    def _finish(self, status: int, rusage: resource.struct_rusage) -> Usage:
        code = os.waitstatus_to_exitcode(status)
        self.proc.returncode = code  # already reaped: keep Popen from waiting again
        self._log.close()
        # Linux reports KiB; where there is no /proc, ru_maxrss (an upper bound) is what there is.
        peak_kib = self._hwm_kib or rusage.ru_maxrss
        self.usage = Usage(code, time.monotonic() - self.started,
                           rusage.ru_utime + rusage.ru_stime, peak_kib / 1024)
        return self.usage

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.usage is None:
            self.proc.kill()
            with contextlib.suppress(BenchError):
                self.wait(10)


class BenchError(RuntimeError):
    """A benchmark could not measure what it set out to (a contender failed or hung)."""


def reference_cpu_s(iterations: int) -> float:
    """CPU s a fresh interpreter spends on a fixed pure-Python loop: the machine's speed at the
    time, printed beside CPU figures so that runs on other machines (or other minutes) compare."""
    proc = subprocess.Popen([sys.executable, "-c",
                             f"s = 0\nfor i in range({iterations}):\n    s += i"])
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise BenchError(f"the reference loop exited {proc.returncode}")
    return usage.ru_utime + usage.ru_stime
