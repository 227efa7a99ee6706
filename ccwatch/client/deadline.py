"""A total deadline per HTTP exchange, enforced at the socket.

A socket timeout applies to each read and write: a server that sends a byte every few seconds keeps
an exchange alive for ever. Here every socket operation of the exchange running on this thread
waits at most until its ``Budget`` runs out, so headers and body together end in time. Used by
``ccwatch.client.wire`` and ``ccwatch.client.api`` only.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_PIECE = 1 << 20


class Budget:
    """The time one exchange may take: ``total_s``, plus ``1/min_rate`` s per byte moved."""

    def __init__(self, total_s: float, min_rate: float | None = None) -> None:
        self.start = time.monotonic()
        self.total_s = total_s
        self.min_rate = min_rate
        self.moved = 0

    def left(self) -> float:
        allowed = self.total_s + (self.moved / self.min_rate if self.min_rate else 0.0)
        return self.start + allowed - time.monotonic()


_current = threading.local()  # the Budget of the exchange this thread is running, if any


def _bounded(timeout: float | None) -> float | None:
    """The socket timeout to use now: the caller's, cut to what is left of the exchange's budget."""
    budget: Budget | None = getattr(_current, "budget", None)
    if budget is None:
        return timeout
    left = budget.left()
    if left <= 0:
        raise TimeoutError("the exchange's total deadline has passed")
    return left if timeout is None else min(timeout, left)


def _moved(size: int) -> None:
    budget: Budget | None = getattr(_current, "budget", None)
    if budget is not None:
        budget.moved += size


class BoundedSocket:
    """A connected socket whose reads and writes wait at most until the running exchange's
    deadline (and at most the socket's own timeout): each of ``ccwatch.client.wire``'s connections reads
    and writes through one."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._timeout = self._set = sock.gettimeout()

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def _arm(self) -> None:
        timeout = _bounded(self._timeout)
        if timeout != self._set:
            self._sock.settimeout(timeout)
            self._set = timeout

    def recv_into(self, buffer: Any, nbytes: int = 0) -> int:
        self._arm()
        size = self._sock.recv_into(buffer, nbytes)
        _moved(size)
        return size

    def sendall(self, data: Any) -> None:
        view = memoryview(data)
        while view:  # a piece at a time, so a slow reader cannot hold one call past the deadline
            self._arm()
            sent = self._sock.send(view[:_PIECE])
            _moved(sent)
            view = view[sent:]

    def reader(self, size: int) -> io.BufferedReader:
        """A buffered reader on this socket; closing it leaves the socket to :meth:`close`."""
        return io.BufferedReader(socket.SocketIO(self, "rb"), size)  # type: ignore[arg-type]

    def _decref_socketios(self) -> None:  # called by SocketIO.close: the socket stays open
        pass

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name: str) -> Any:  # fileno, setsockopt, shutdown, ...
        return getattr(self._sock, name)


@contextmanager
def deadline(budget: Budget) -> Iterator[Budget]:
    """Run the exchanges inside under ``budget`` (this thread only)."""
    previous = getattr(_current, "budget", None)
    _current.budget = budget
    try:
        yield budget
    finally:
        _current.budget = previous
