"""Signed webhook deliveries from background threads, retried like the real service."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import httpx

from ccwatch.emulator.faults import Faults

RETRIES = 3  # after the first attempt, on network errors and 5xx


def sign(body: bytes, secret: str) -> str:
    """``CloudConvert-Signature``: lowercase hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Delivery(NamedTuple):
    url: str
    event: str
    job_id: str
    attempt: int
    status: int  # 0 = network error; -1 = dropped by a fault
    at: float


class _Item(NamedTuple):
    url: str
    event: str
    job_id: str
    body: bytes
    hook_id: str | None


class WebhookSender:
    def __init__(self, secret: str, faults: Faults, on_gone: Callable[[str], None],
                 retry_pause_s: float = 0.5, threads: int = 2, timeout_s: float = 10.0) -> None:
        self._secret = secret
        self._faults = faults
        self._on_gone = on_gone
        self._pause = retry_pause_s
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._log: list[Delivery] = []
        self._timeout_s = timeout_s
        self._client: httpx.Client | None = None  # built on first use: an SSL context is slow
        self._threads = [threading.Thread(target=self._loop, name=f"emulator-webhook-{i}",
                                          daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def send(self, url: str, event: str, job: dict[str, Any], hook_id: str | None = None) -> None:
        body = json.dumps({"event": event, "job": job}, separators=(",", ":")).encode()
        self._queue.put(_Item(url, event, str(job.get("id")), body, hook_id))

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._log)

    def _record(self, item: _Item, attempt: int, status: int) -> None:
        with self._lock:
            self._log.append(Delivery(item.url, item.event, item.job_id, attempt, status, time.time()))

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self._timeout_s)
            return self._client

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._deliver(item)

    def _deliver(self, item: _Item) -> None:
        if self._faults.take("drop_webhook"):
            self._record(item, 1, -1)
            return
        headers = {"Content-Type": "application/json",
                   "CloudConvert-Signature": sign(item.body, self._secret),
                   "User-Agent": "CloudConvert-Webhook-Emulator"}
        for attempt in range(1, RETRIES + 2):
            try:
                status = self._http().post(item.url, content=item.body, headers=headers).status_code
            except httpx.HTTPError:
                status = 0
            self._record(item, attempt, status)
            if status == 410 and item.hook_id is not None:
                self._on_gone(item.hook_id)
                return
            if 0 < status < 500 or self._stop.is_set():
                return
            if attempt <= RETRIES and self._stop.wait(self._pause * attempt):
                return

    def close(self) -> None:
        self._stop.set()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=15)
        if self._client is not None:
            self._client.close()
