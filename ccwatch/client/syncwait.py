"""Waiting on jobs through the sync host (``GET {sync}/v2/jobs/{id}``), thousands at once.

The sync host answers a wait when the job ends, so a job is seen finished the moment it is, with one
request instead of a poll schedule. One event-loop thread holds every wait, each a coroutine and a
socket, never a thread. A wait has a client deadline; when it passes the job is handed back as still
running (the pipeline reads it once, then waits again). Anything else (an error, an early answer
with the job still running, too many waits at once, a stop) hands the job back with no result: the
pipeline then polls it.

The waits speak just the HTTP/1.1 they need over asyncio streams (one GET, a JSON answer by length
or chunks, keep-alive): a general async client cost ~2.5 ms of CPU per wait, more than the rest of
a file's tracking. Behind an HTTP proxy (``HTTPS_PROXY`` and friends) jobs are polled instead,
through the API client, which honours the proxy.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Literal

from loguru import logger

from ccwatch import __version__
from ccwatch.client.framing import add_field, keeps_alive, parse_status
from ccwatch.client.wire import proxy_for

ENDED = ("finished", "error")
# Below the idle timeout of most proxies and load balancers (60 s), so a healthy wait is not cut.
DEADLINE_S = 50.0
MIN_DEADLINE_S = 1.0  # a job near its job_timeout_s is not read in a tight loop
CONNECT_S = 15.0
# Each wait is an open socket; beyond this many (file descriptors are finite) a job is polled.
MAX_WAITS = 512
KEEP_ALIVE = 32  # idle sockets kept for the next waits
MAX_HEAD = 64 << 10
MAX_BODY = 32 << 20  # as the API client: a job with 10,000s of files fits

# What a wait came to: the ended job, "running" (the deadline passed), or None (poll it instead).
Waited = dict[str, Any] | Literal["running"] | None
# Called on the loop thread with (key, what the wait came to).
Done = Callable[[int, Waited], None]


class SyncHostError(Exception):
    """The sync host's answer could not be read as HTTP/1.1 (the job is polled)."""


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class JobWaiter:
    def __init__(self, sync_base_url: str, api_key: str | None, on_done: Done, *,
                 deadline_s: float = DEADLINE_S, max_waits: int = MAX_WAITS,
                 tls: Callable[[], ssl.SSLContext] = ssl.create_default_context) -> None:
        self.base_url = sync_base_url.rstrip("/")
        url = urllib.parse.urlsplit(self.base_url)
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port or (443 if self._https else 80)
        self._path = url.path
        self._tls = tls  # the API client's context maker: the CA bundle is loaded once, if at all
        self._on_done = on_done
        self._deadline_s = deadline_s
        self._max_waits = max_waits
        host = f"[{self._host}]" if ":" in self._host else self._host  # an IPv6 literal
        if url.port is not None:
            host += f":{url.port}"
        head = [f"Host: {host}", f"User-Agent: ccwatch/{__version__}", "Accept: application/json"]
        if api_key:
            head.append(f"Authorization: Bearer {api_key}")
        self._head = "\r\n".join(head) + "\r\n\r\n"
        self._idle: list[Stream] = []
        self._lock = threading.Lock()
        self._waits: dict[int, Future[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        proxy = proxy_named(url)
        if proxy:
            logger.info("an HTTP proxy is set for {} ({}): jobs are polled through it",
                        self._host, proxy)
            return
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
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()

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
            status, body = await self._get(f"{self._path}/v2/jobs/{job_id}", deadline_s)
        except TimeoutError:
            return "running"  # the client deadline passed with the job still running
        except (OSError, EOFError, SyncHostError, ValueError, http.client.HTTPException,
                asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            logger.bind(job=job_id).info("the sync host failed ({}); polling the job",
                                         exc.__class__.__name__)
            return None
        if not 200 <= status < 300:
            logger.bind(job=job_id).info("the sync host answered {}; polling the job", status)
            return None
        try:
            data = json.loads(body).get("data")
        except (ValueError, AttributeError):
            return None
        if isinstance(data, dict) and data.get("status") in ENDED:
            return data
        return None  # answered early, the job still running: the poll schedule takes over

    # -- HTTP/1.1 ------------------------------------------------------------------------------

    async def _get(self, target: str, deadline_s: float) -> tuple[int, bytes]:
        """One GET on a kept or new socket: (status, body). TimeoutError when ``deadline_s``
        passes (a socket that cannot connect within CONNECT_S is an OSError instead)."""
        request = f"GET {target} HTTP/1.1\r\n{self._head}".encode()
        async with asyncio.timeout(deadline_s):
            while self._idle:
                reader, writer = self._idle.pop()
                if reader.at_eof():
                    writer.close()
                    continue
                try:
                    return await self._exchange(reader, writer, request)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                        raise
                    # The server closed the kept socket before answering: ask on a new one.
            return await self._exchange(*await self._connect(), request)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        request: bytes) -> tuple[int, bytes]:
        reusable = False
        try:
            writer.write(request)
            status, reusable, body = await _answer(reader)
            return status, body
        finally:
            if reusable and len(self._idle) < KEEP_ALIVE and not reader.at_eof():
                self._idle.append((reader, writer))
            else:
                writer.close()

    async def _connect(self) -> Stream:
        context = self._tls() if self._https else None
        try:
            async with asyncio.timeout(CONNECT_S):
                return await asyncio.open_connection(
                    self._host, self._port, ssl=context, limit=MAX_HEAD,
                    server_hostname=self._host if context else None)
        except TimeoutError:
            raise ConnectionError(f"no connection to {self._host} within {CONNECT_S:g} s") from None


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """Read one answer: (status, whether the socket can carry another request, body)."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    version, status, _ = parse_status(head[0])
    headers: dict[str, str] = {}
    for line in head[1:]:
        add_field(headers, line)
    keep = keeps_alive(version, headers.get("connection", ""))
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return status, keep, await _chunked(reader)
    length = headers.get("content-length")
    if length is None:  # delimited by the end of the connection
        body = await reader.read(MAX_BODY + 1)
        keep = False
    elif not length.isdigit() or int(length) > MAX_BODY:
        raise SyncHostError(f"unusable Content-Length {length[:40]!r}")
    else:
        body = await reader.readexactly(int(length))
    if len(body) > MAX_BODY:
        raise SyncHostError(f"an answer over {MAX_BODY} bytes")
    return status, keep, body


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        length = int(line.split(b";", 1)[0].strip() or b"x", 16)
        if length == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        size += length
        if size > MAX_BODY:
            raise SyncHostError(f"an answer over {MAX_BODY} bytes")
        parts.append(await reader.readexactly(length))
        await reader.readexactly(2)


def proxy_named(url: urllib.parse.SplitResult) -> str | None:
    """host:port of the proxy the environment names for ``url`` (never its password), if any."""
    where = proxy_for(url, urllib.request.getproxies())
    if where is None:
        return None
    return f"{where.hostname}:{where.port}" if where.port else str(where.hostname)
