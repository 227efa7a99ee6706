"""The process and its service manager: signals, systemd notifications (``sd_notify``), the
watchdog interval systemd asks for, and the lock that allows one daemon per state dir.

Portable: without AF_UNIX sockets or POSIX locks (Windows, tests/system/test_portable_core.py),
notifications are skipped and the lock degrades to a warning.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from loguru import logger

from ccwatch.errors import ConfigError


def sd_notify(message: str) -> bool:
    """Send a systemd notification when ``NOTIFY_SOCKET`` is set; silently nothing otherwise."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    family = getattr(socket, "AF_UNIX", None)
    if family is None:  # Windows builds of Python have no AF_UNIX; and no systemd to notify
        _warn_no_af_unix()
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
    except OSError as exc:
        logger.warning("sd_notify failed: {}", exc)
        return False
    return True


@functools.cache
def _warn_no_af_unix() -> None:
    logger.warning("NOTIFY_SOCKET is set, but sd_notify needs AF_UNIX sockets: not on this platform")


def watchdog_interval_s() -> float | None:
    """Half of systemd's WatchdogSec, when the unit asks for keep-alives."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit():
        return None
    return int(usec) / 2_000_000


LOCK_NAME = "ccwatch.lock"


@contextmanager
def single_instance(state_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the state dir for the daemon's life: one daemon per ledger.

    The kernel drops the lock when the process dies, even by ``kill -9``, so a stale file never
    blocks a restart; the pid inside is only there to name the holder.
    """
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError("daemon.state_dir",
                          f"cannot create the lock file in {state_dir}: {exc.strerror}") from exc
    try:
        if not _try_lock(fd):
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            raise ConfigError("daemon.state_dir",
                              f"already running (pid {holder}) with the state dir {state_dir}; "
                              "stop it first (`ccwatch status` works beside it)")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        import fcntl
    except ImportError:  # no POSIX locks here (tests/system/test_portable_core.py blocks them)
        logger.warning("this platform has no file locks: one daemon per state dir is not enforced")
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class Alert(threading.Event):
    """An event that also wakes whoever sleeps on ``attention`` (the daemon's main loop)."""

    def __init__(self, attention: threading.Event) -> None:
        super().__init__()
        self._attention = attention

    def set(self) -> None:
        super().set()
        self._attention.set()


def install_signal_handlers(stop: threading.Event, *, reload: threading.Event | None = None
                            ) -> None:
    """SIGTERM and SIGINT (Ctrl-C) set ``stop``: intake stops and running transfers drain.
    SIGHUP sets ``reload`` (the daemon re-reads its config); where nothing reloads (``run
    --once``) it is logged and ignored rather than ending the process without a word."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        logger.info("received {}; stopping intake and draining", signal.Signals(signum).name)
        stop.set()

    def hangup(_signum: int, _frame: FrameType | None) -> None:
        if reload is not None:
            reload.set()
        else:
            logger.warning("received SIGHUP: ignored (run --once does not reload its config)")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    if hasattr(signal, "SIGHUP"):  # not on Windows: there a restart re-reads the config
        signal.signal(signal.SIGHUP, hangup)
    if hasattr(signal, "SIGBREAK"):  # Windows: Ctrl-Break in the console
        signal.signal(signal.SIGBREAK, handler)
