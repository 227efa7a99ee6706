"""The waitress loop under the emulator and the webhook receiver: it waits while a task writes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from waitress import wasyncore
from waitress.server import create_server

from ccwatch import wsgiserve


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]


@pytest.fixture
def channel() -> Iterator[Any]:
    """A real channel of a server built as ``serve_in_thread`` builds it, one client connected."""
    server: Any = create_server(_app, host="127.0.0.1", port=0, asyncore_use_poll=True)
    server.channel_class = wsgiserve._Channel
    client = socket.create_connection(("127.0.0.1", server.effective_port))
    try:
        for _ in range(50):
            wasyncore.loop(timeout=0.1, map=server._map, use_poll=True, count=1)
            channels = [c for c in server._map.values() if isinstance(c, wsgiserve._Channel)]
            if channels:
                break
        [chan] = channels
        yield chan
    finally:
        client.close()
        for chan in list(server._map.values()):
            chan.close()


@contextmanager
def _held(lock: Any) -> Iterator[None]:
    """``lock`` held by another thread (a task writing) for the duration."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(10)
    try:
        yield
    finally:
        release.set()
        holder.join(10)


def test_the_loop_does_not_poll_for_output_a_task_is_still_writing(channel: Any) -> None:
    """waitress asks to write whenever output is pending; while the task's thread holds the
    output lock (it flushes what it writes itself) that made the loop spin, taking a core from
    the client under test. Pending output with the lock free, or a close, still asks."""
    channel.requests = [object()]  # a task running
    channel.total_outbufs_len = 10  # and output pending
    assert channel.writable()
    with _held(channel.outbuf_lock):
        assert not channel.writable()
        channel.will_close = True
        assert channel.writable()
        channel.will_close = False
        channel.requests = []  # no task: the loop flushes itself, lock or not
        assert channel.writable()
    channel.total_outbufs_len = 0
    assert not channel.writable()


def test_a_request_ending_after_the_stop_does_not_wake_the_closed_loop(tmp_path: Path) -> None:
    """Stopping closes every socket, the loop's trigger first, while a request may still run (a
    sync wait): when it ends, its thread wakes the loop. That must not write into the trigger's
    closed descriptor (EBADF), nor into the file that has its number by then."""
    server: Any = create_server(_app, host="127.0.0.1", port=0, asyncore_use_poll=True)
    loop = wsgiserve._Loop(server, "test-loop")
    loop.thread.start()
    loop.stop()
    assert not loop.thread.is_alive()
    with (tmp_path / "innocent").open("wb+") as innocent:  # likely the trigger's old number
        server.pull_trigger()  # what a request's thread does when its answer is written
        innocent.flush()
        assert (tmp_path / "innocent").read_bytes() == b""
