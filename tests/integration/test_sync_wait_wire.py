"""The sync-host waiter's own HTTP/1.1 against a scripted server on a real loopback socket: the
answer framings servers use (length, chunks, close-delimited), a kept socket the server closed,
and answers that are not HTTP — each read correctly or handed back for polling, never hung."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from scripted_server import ENDED, ScriptedServer, length_answer

from ccwatch.client.syncwait import JobWaiter, Waited
from ccwatch.testing import wait_for


@pytest.fixture
def waits() -> Iterator[Callable[[ScriptedServer, int], list[Waited]]]:
    made: list[JobWaiter] = []

    def run(server: ScriptedServer, count: int) -> list[Waited]:
        results: list[Waited] = []
        waiter = JobWaiter(f"http://127.0.0.1:{server.port}/sync", "k", lambda _, job:
                           results.append(job), deadline_s=5)
        made.append(waiter)
        for i in range(count):  # one after another, so a kept socket is reused
            assert waiter.wait(i, f"j{i}")
            wait_for(lambda done=i + 1: len(results) == done, timeout=10,
                     message=f"wait {i} to end")
        return results

    yield run
    for waiter in made:
        waiter.close()


def is_ended(job: Waited) -> bool:
    return isinstance(job, dict) and job.get("status") == "finished"


def test_a_kept_socket_carries_the_next_wait(waits: Any) -> None:
    server = ScriptedServer(lambda n, _: length_answer())
    results = waits(server, 3)
    assert all(map(is_ended, results))
    assert server.connections == 1
    first = server.requests[0].head
    assert first.startswith("GET /sync/v2/jobs/j0 HTTP/1.1\r\n")
    assert "Authorization: Bearer k" in first and "Host: 127.0.0.1:" in first


def test_chunked_and_close_delimited_answers_are_read(waits: Any) -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"".join(f"{len(part):x};ext=1\r\n".encode() + part + b"\r\n"
                          for part in (ENDED[:10], ENDED[10:]))
               + b"0\r\nX-Trailer: y\r\n\r\n")
    server = ScriptedServer(lambda n, _: chunked)
    assert all(map(is_ended, waits(server, 2)))
    assert server.connections == 1  # a chunked answer leaves the socket usable

    closing = ScriptedServer(lambda n, _: b"HTTP/1.0 200 OK\r\n\r\n" + ENDED, keep=False)
    assert all(map(is_ended, waits(closing, 2)))
    assert closing.connections == 2  # no length: the socket ends with the answer


def test_a_kept_socket_the_server_closed_is_replaced_not_reported(waits: Any) -> None:
    """The server drops the socket after one answer without saying so (an idle timeout): the
    next wait is asked again on a new socket, not handed to polling."""
    server = ScriptedServer(lambda n, _: length_answer() if n % 2 else None)
    results = waits(server, 2)
    assert all(map(is_ended, results))
    assert server.connections == 2 and len(server.requests) == 3


@pytest.mark.parametrize("reply", [
    b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\nshort",
    length_answer(b"<html>not json</html>"),
    length_answer(b'{"data": {"id": "j", "status": "processing"}}'),
    length_answer(b'{"message": "gateway"}', status="502 Bad Gateway"),
])
def test_an_answer_that_cannot_be_used_hands_the_job_to_polling(waits: Any, reply: bytes) -> None:
    server = ScriptedServer(lambda n, _: reply, keep=False)
    assert waits(server, 1) == [None]


def test_a_silent_server_is_a_wait_past_its_deadline() -> None:
    server = ScriptedServer(lambda n, _: b"")  # reads the request, never answers
    results: list[Waited] = []
    waiter = JobWaiter(f"http://127.0.0.1:{server.port}", None, lambda _, job: results.append(job),
                       deadline_s=1.0)
    try:
        assert waiter.wait(1, "j")
        wait_for(lambda: results == ["running"], timeout=5, message="the deadline to pass")
        assert server.requests[0].header("Authorization") is None
    finally:
        waiter.close()


def test_behind_a_proxy_jobs_are_polled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy in the environment applies to the API client; the waiter does not go around it."""
    server = ScriptedServer(lambda n, _: length_answer())
    monkeypatch.setenv("HTTP_PROXY", "http://user:secret@proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    waiter = JobWaiter(f"http://example.invalid:{server.port}", None, lambda _, job: None)
    try:
        assert waiter.wait(1, "j") is False
        assert server.requests == []
    finally:
        waiter.close()
