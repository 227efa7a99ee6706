"""A total deadline per HTTP exchange, enforced at the socket.

httpx's timeouts apply to each read and write: a server that sends a byte every few seconds keeps
an exchange alive for ever. Here every socket operation of the exchange running on this thread
waits at most until its ``Budget`` runs out, so headers and body together end in time. Used by
``ccwatch.api`` only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx


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


def _bounded(timeout: float | None, expired: type[Exception]) -> float | None:
    """The socket timeout to use now: the caller's, cut to what is left of the exchange's budget."""
    budget: Budget | None = getattr(_current, "budget", None)
    if budget is None:
        return timeout
    left = budget.left()
    if left <= 0:
        raise expired("the exchange's total deadline has passed")
    return left if timeout is None else min(timeout, left)


def _moved(size: int) -> None:
    budget: Budget | None = getattr(_current, "budget", None)
    if budget is not None:
        budget.moved += size


class _BoundedStream(httpcore.NetworkStream):
    """Each socket operation waits at most until the running exchange's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))
        _moved(len(data))
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))
        _moved(len(buffer))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _BoundedStream(self._inner.start_tls(
            ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _BoundedBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None, socket_options: Any = None
                    ) -> httpcore.NetworkStream:
        return _BoundedStream(self._inner.connect_tcp(
            host, port, _bounded(timeout, httpcore.ConnectTimeout), local_address,
            socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        return _BoundedStream(self._inner.connect_unix_socket(
            path, _bounded(timeout, httpcore.ConnectTimeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def bounded(client: httpx.Client) -> httpx.Client:
    """Put the deadline under every connection ``client`` makes (direct or through the proxies
    httpx took from the environment)."""
    backend = _BoundedBackend()
    for transport in (client._transport, *client._mounts.values()):
        # httpx offers no network_backend option; its httpcore pool takes the backend from this
        # attribute for every new connection.
        pool = getattr(transport, "_pool", None)
        if pool is None or not hasattr(pool, "_network_backend"):
            raise RuntimeError(f"unexpected httpx transport {transport!r}: cannot bound it")
        pool._network_backend = backend
    return client


@contextmanager
def deadline(budget: Budget) -> Iterator[Budget]:
    """Run the exchanges inside under ``budget`` (this thread only)."""
    previous = getattr(_current, "budget", None)
    _current.budget = budget
    try:
        yield budget
    finally:
        _current.budget = previous
