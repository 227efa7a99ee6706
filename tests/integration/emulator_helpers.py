"""Helpers for the emulator's own tests: images, jobs, uploads, waits, a webhook receiver."""

from __future__ import annotations

import http.server
import io
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import httpx
from PIL import Image

from ccwatch.emulator import Emulator
from ccwatch.testing import wait_for

TO_JPG = {
    "in": {"operation": "import/upload"},
    "convert": {"operation": "convert", "input": "in", "output_format": "jpg"},
    "out": {"operation": "export/url", "input": "convert"},
}


# One SSL context for every client: building one per httpx.Client costs ~0.1 s.
SSL = ssl.create_default_context()
EMULATOR_PROCESS_KEY = "child-key"  # the key of the ``emulator_process`` fixture's emulator


def plain() -> httpx.Client:
    """A client without the API key, for forms, downloads and control endpoints."""
    return httpx.Client(verify=SSL, timeout=30)


def web_get(url: str, **kwargs: Any) -> httpx.Response:
    with plain() as web:
        return web.get(url, **kwargs)


def web_post(url: str, **kwargs: Any) -> httpx.Response:
    with plain() as web:
        return web.post(url, **kwargs)


def web_head(url: str, **kwargs: Any) -> httpx.Response:
    with plain() as web:
        return web.head(url, **kwargs)


def web_delete(url: str, **kwargs: Any) -> httpx.Response:
    with plain() as web:
        return web.delete(url, **kwargs)


def png_bytes(size: tuple[int, int] = (32, 24), color: tuple[int, ...] = (200, 30, 30, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", size, color).save(buf, "PNG")
    return buf.getvalue()


def client(emu: Emulator, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=emu.base_url or "", timeout=30, verify=SSL,
                        headers={"Authorization": f"Bearer {key or emu.api_key}"})


def create_job(api: httpx.Client, tasks: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    response = api.post("/v2/jobs", json={"tasks": tasks or TO_JPG, **extra})
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()["data"]
    return job


def task_named(job: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in job["tasks"] if t["name"] == name)


def upload(job: dict[str, Any], filename: str, content: bytes, task: str = "in") -> httpx.Response:
    form = task_named(job, task)["result"]["form"]
    return web_post(form["url"], data=form["parameters"], files={"file": (filename, content)})


def wait_job(api: httpx.Client, job_id: str) -> dict[str, Any]:
    response = api.get(f"/sync/v2/jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()["data"]
    return job


def convert_png(api: httpx.Client, filename: str = "pic.png", **extra: Any) -> dict[str, Any]:
    """Create a png→jpg job, upload, wait: the ended job."""
    job = create_job(api, **extra)
    assert upload(job, filename, png_bytes()).status_code == 201
    return wait_job(api, job["id"])


def export_url(job: dict[str, Any], name: str = "out") -> str:
    url: str = task_named(job, name)["result"]["files"][0]["url"]
    return url


def poll(condition: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Poll ``condition`` until truthy or the deadline; never sleep-then-assert."""
    return wait_for(condition, timeout=timeout_s, interval=0.01, message=what)


class Received(NamedTuple):
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A tiny local HTTP server collecting webhook deliveries; answers the queued statuses first."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        self.url = ""

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.received.append(Received(self.path, dict(self.headers), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), receiver.handler())
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
