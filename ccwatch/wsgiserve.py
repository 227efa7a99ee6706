"""Serving a WSGI app with waitress on a background thread, stoppable at once.

Used by the webhook receiver and by the emulator. ``server.close()`` alone would leave waitress's
loop serving keep-alive channels until they time out, and its worker threads running; this loop
polls one round at a time so a stop ends it promptly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import WSGITask


class _KeepAliveTask(WSGITask):
    """waitress closes an HTTP/1.1 connection after every answer that has no body (204, 304),
    though neither side asked to; real hosts keep it (the SDKs' recorded traffic shows a job
    delete's 204 with ``Connection: keep-alive``), and a reconnect per delete is not what
    clients see in production."""

    def build_response_header(self) -> bytes:
        asked_to_close = self.close_on_finish or any(
            name.lower() == "connection" and value.lower() == "close"
            for name, value in self.response_headers)
        head: bytes = super().build_response_header()
        if (not self.has_body and self.version == "1.1" and not asked_to_close
                and getattr(self.request, "headers", {}).get("CONNECTION", "").lower() != "close"):
            self.close_on_finish = False
            head = head.replace(b"\r\nConnection: close\r\n", b"\r\n", 1)
        return head


class _Channel(HTTPChannel):
    task_class = _KeepAliveTask

    def writable(self) -> bool:
        """Not while a task holds the output lock: the task flushes what it writes itself (and
        wakes the loop if the socket takes only part), so the loop would only spin on the lock;
        on a busy machine that spin took a core from the client under test for as long as the
        task's thread waited for one."""
        if (self.requests and self.total_outbufs_len and not self.will_close
                and not self.close_when_flushed):
            if not self.outbuf_lock.acquire(False):
                return False
            self.outbuf_lock.release()
        return bool(super().writable())


class _Loop:
    """The lock orders "stop and wake the loop" before "close every socket": waking a closed
    trigger would write into a file descriptor number some other file may own by then."""

    def __init__(self, server: Any, name: str) -> None:
        self.server = server
        self.lock = threading.Lock()
        self.stopping = False
        self.closed = False
        self._pull_trigger = server.pull_trigger
        # Worker threads wake the loop through this (a task flushing its answer): once the
        # sockets are closed, a request still running must not write into the trigger's old fd.
        server.pull_trigger = self._wake
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _wake(self) -> None:
        with self.lock:
            if not self.closed:
                self._pull_trigger()

    def _run(self) -> None:
        try:
            while not self.stopping:
                wasyncore.loop(timeout=1.0, map=self.server._map, use_poll=True, count=1)
        finally:
            with self.lock:
                self.stopping = self.closed = True
                for channel in list(self.server._map.values()):
                    with suppress(OSError):
                        channel.close()
            self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)

    def stop(self) -> None:
        with self.lock:
            if not self.stopping:
                self.stopping = True
                self._pull_trigger()
        self.thread.join(timeout=10)


@contextmanager
def serve_in_thread(app: Any, *, host: str, port: int, name: str, **options: Any) -> Iterator[int]:
    """Bind (OSError if it cannot), serve on a daemon thread, yield the bound port; stop on exit."""
    server: Any = create_server(app, host=host, port=port, asyncore_use_poll=True, **options)
    server.channel_class = _Channel
    loop = _Loop(server, name)
    loop.thread.start()
    try:
        yield int(server.effective_port)
    finally:
        loop.stop()
