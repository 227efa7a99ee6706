"""Waiting on jobs through the sync host (``GET {sync}/v2/jobs/{id}``), thousands at once.

The sync host answers a wait when the job ends, so a job is seen finished the moment it is, with one
request instead of a poll schedule. One event-loop thread holds every wait, each a coroutine and a
socket (``httpx.AsyncClient``), never a thread. A wait has a client deadline; when it passes the job
is handed back as still running (the pipeline reads it once, then waits again). Anything else (an
error, an early answer with the job still running, too many waits at once, a stop) hands the job
back with no result: the pipeline then polls it.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Literal

import httpx
from loguru import logger

from ccwatch import __version__

ENDED = ("finished", "error")
# Below the idle timeout of most proxies and load balancers (60 s), so a healthy wait is not cut.
DEADLINE_S = 50.0
# Each wait is an open socket; beyond this many (file descriptors are finite) a job is polled.
MIN_DEADLINE_S = 1.0  # a job near its job_timeout_s is not read in a tight loop
MAX_WAITS = 512
KEEP_ALIVE = 32

# What a wait came to: the ended job, "running" (the deadline passed), or None (poll it instead).
Waited = dict[str, Any] | Literal["running"] | None
# Called on the loop thread with (key, what the wait came to).
Done = Callable[[int, Waited], None]


class JobWaiter:
    def __init__(self, sync_base_url: str, api_key: str | None, on_done: Done, *,
                 deadline_s: float = DEADLINE_S, max_waits: int = MAX_WAITS,
                 tls: ssl.SSLContext | bool = True) -> None:
        self.base_url = sync_base_url.rstrip("/")
        self._tls = tls  # the API client's context when given: the CA bundle is loaded once
        self._on_done = on_done
        self._deadline_s = deadline_s
        self._max_waits = max_waits
        self._headers = {"User-Agent": f"ccwatch/{__version__}", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._lock = threading.Lock()
        self._waits: dict[int, Future[None]] = {}
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        try:
            self._loop = asyncio.new_event_loop()
        except OSError as exc:  # no socketpair for the loop's wake-up (a stripped-down platform)
            logger.warning("cannot wait on jobs through the sync host ({}); polling them", exc)
            return
        self._thread = threading.Thread(target=self._loop.run_forever, name="ccwatch-wait",
                                        daemon=True)
        self._thread.start()

    def wait(self, key: int, job_id: str, *, deadline_s: float | None = None) -> bool:
        """Start waiting on ``job_id`` (any thread) for at most ``deadline_s`` (within the
        waiter's own deadline and MIN_DEADLINE_S); False when no wait can start (poll it)."""
        deadline = min(self._deadline_s, max(MIN_DEADLINE_S, deadline_s or self._deadline_s))
        with self._lock:
            if (self._loop is None or self._loop.is_closed()
                    or len(self._waits) >= self._max_waits):
                return False
            try:
                self._waits[key] = asyncio.run_coroutine_threadsafe(
                    self._wait(key, job_id, deadline), self._loop)
            except RuntimeError:  # the loop stopped meanwhile
                return False
        return True

    def waiting(self) -> int:
        with self._lock:
            return len(self._waits)

    def release(self) -> None:
        """Hand every waiting job back at once (a stop: nothing should hold the drain)."""
        with self._lock:
            waits = list(self._waits.values())
        for future in waits:
            future.cancel()

    def close(self) -> None:
        self.release()
        if self._loop is None:
            return
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._aclose(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    async def _aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:  # made on the loop, where it is used
            timeout = httpx.Timeout(self._deadline_s, connect=15.0)
            # Few idle sockets kept: the pool walks all of its connections on every request.
            limits = httpx.Limits(max_connections=self._max_waits,
                                  max_keepalive_connections=KEEP_ALIVE)
            self._client = httpx.AsyncClient(base_url=self.base_url, headers=self._headers,
                                             timeout=timeout, limits=limits, verify=self._tls)
        return self._client

    async def _wait(self, key: int, job_id: str, deadline_s: float) -> None:
        job: Waited = None
        try:
            job = await self._ended(job_id, deadline_s)
        except asyncio.CancelledError:
            job = None
        except Exception as exc:  # any surprise only means: poll this job
            logger.bind(job=job_id).opt(exception=exc).warning("waiting on the job failed: {}", exc)
        finally:
            with self._lock:
                self._waits.pop(key, None)
            self._on_done(key, job)

    async def _ended(self, job_id: str, deadline_s: float) -> Waited:
        """The ended job, "running" at the deadline, or None when the sync host cannot tell."""
        try:
            response = await self._http().get(f"/v2/jobs/{job_id}",
                                              timeout=httpx.Timeout(deadline_s, connect=15.0))
        except httpx.ReadTimeout:
            return "running"  # the client deadline passed with the job still running
        except httpx.HTTPError as exc:
            logger.bind(job=job_id).info("the sync host failed ({}); polling the job",
                                         exc.__class__.__name__)
            return None
        if not response.is_success:
            logger.bind(job=job_id).info("the sync host answered {}; polling the job",
                                         response.status_code)
            return None
        try:
            data = response.json().get("data")
        except (ValueError, AttributeError):
            return None
        if isinstance(data, dict) and data.get("status") in ENDED:
            return data
        return None  # answered early, the job still running: the poll schedule takes over
