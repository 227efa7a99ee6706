"""The receiver served by waitress: real sockets, size limits, and a clean stop."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from ccwatch import webhook
from ccwatch.emulator import sign

SECRET = "server-test-secret"


def receiver(seen: list[dict[str, Any]]) -> webhook.Receiver:
    def on_job(job: dict[str, Any]) -> str:
        seen.append(job)
        return "accepted"

    return webhook.Receiver(path="/hook", secret=SECRET, on_job=on_job)


def webhook_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ccwatch-webhook" and t.is_alive()]


def test_serves_signed_posts_and_stops_despite_keep_alive() -> None:
    """A sender holding a keep-alive connection must not keep the server running after stop."""
    seen: list[dict[str, Any]] = []
    body = b'{"event":"job.finished","job":{"id":"j1","status":"finished"}}'
    with httpx.Client(timeout=10) as sender:
        with webhook.serve(receiver(seen), "127.0.0.1", 0) as base:
            answer = sender.post(base + "/hook", content=body,
                                 headers={"CloudConvert-Signature": sign(body, SECRET)})
            assert answer.status_code == 200
            assert webhook_threads()
        assert webhook_threads() == []
    assert seen == [{"id": "j1", "status": "finished"}]


def test_oversized_bodies_are_refused_without_reaching_the_pipeline() -> None:
    """2 MiB: our own logged 413. 8 MiB: waitress stops it before buffering it all."""
    seen: list[dict[str, Any]] = []
    with webhook.serve(receiver(seen), "127.0.0.1", 0) as base, \
            httpx.Client(timeout=10) as sender:
        for size in (2 << 20, 8 << 20):
            body = b"x" * size
            answer = sender.post(base + "/hook", content=body,
                                 headers={"CloudConvert-Signature": sign(body, SECRET)})
            assert answer.status_code == 413, size
    assert seen == []
