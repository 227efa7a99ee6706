"""The HTTP/1.1 client under ``ccwatch.api``: ``http.client`` connections, kept per host.

A general client (httpx) cost ~1.2 ms of CPU per request, four times ``http.client``'s, and a file
makes about five; this one does what the API and storage hosts need and no more: keep-alive,
TLS with the process's one context, an environment proxy (``HTTP(S)_PROXY``, ``NO_PROXY``),
redirects for downloads, bodies streamed both ways in 1 MiB pieces, gzip/deflate answers.
Every socket operation waits at most until the running exchange's ``deadline.Budget`` runs out.
Raises OSError (TimeoutError when out of time), ``http.client.HTTPException`` for a broken answer
and ``TooManyRedirects``; ``ccwatch.api`` turns them into ``ccwatch.errors`` classes.
"""

from __future__ import annotations

import base64
import http.client
import select
import ssl
import threading
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ccwatch.deadline import BoundedSocket
from ccwatch.errors import TooManyRedirects

CHUNK = 1 << 20
REDIRECTS = (301, 302, 303, 307, 308)
IDEMPOTENT = ("GET", "HEAD", "DELETE", "PUT")
Body = bytes | Iterable[bytes] | None
_Key = tuple[str, str, int]


class Answer:
    """A response whose body is streamed with ``chunks()``."""

    def __init__(self, raw: http.client.HTTPResponse) -> None:
        self._raw = raw
        self.status_code = raw.status
        self.reason_phrase = raw.reason
        self.headers = raw.headers  # case-insensitive .get()

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def is_redirect(self) -> bool:
        return self.status_code in REDIRECTS and "Location" in self.headers

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives (decoded when the server compressed it anyway)."""
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        decoder = {"gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
                   "deflate": zlib.decompressobj}.get(encoding)
        inflate = decoder() if decoder else None
        while chunk := self._raw.read1(CHUNK):
            if inflate is None:
                yield chunk
            while inflate is not None and chunk:  # CHUNK at a time: a small answer can inflate to GBs
                yield inflate.decompress(chunk, CHUNK)
                chunk = inflate.unconsumed_tail
        self._raw.read()  # nothing left, but read1 (3.11) never marks a sized answer finished
        if inflate:
            yield inflate.flush()

    def close(self) -> None:
        self._raw.close()

    def skim(self, limit: int = 64 << 10) -> None:
        """Read a body nobody needs, up to ``limit`` bytes (then the socket is not kept)."""
        size = 0
        for chunk in self.chunks():
            size += len(chunk)
            if size > limit:
                return

    @property
    def done(self) -> bool:
        """The whole body was read, and the server keeps the connection open."""
        return self._raw.isclosed() and not self._raw.will_close


class _Plain(http.client.HTTPConnection):
    kept = False  # it carried an exchange before: the server may have closed it since

    def connect(self) -> None:
        super().connect()
        self.sock = BoundedSocket(self.sock)


class _Tls(http.client.HTTPSConnection):
    kept = False

    def connect(self) -> None:
        super().connect()
        self.sock = BoundedSocket(self.sock)


_Connection = _Plain | _Tls


@dataclass(frozen=True, slots=True)
class _Route:
    """Where one request goes: its URL, the pool it draws from, its target without a proxy,
    and the proxy the environment names for it."""

    url: str
    key: _Key
    path: str
    proxy: urllib.parse.SplitResult | None


class Client:
    """Safe to share between threads: each exchange has a connection of its own."""

    def __init__(self, *, headers: Mapping[str, str], timeout_s: float, connect_s: float,
                 tls: Callable[[], ssl.SSLContext], max_idle: int = 32) -> None:
        self._headers = dict(headers)
        self._timeout_s = timeout_s
        self._connect_s = connect_s
        self._tls = tls  # called for the first https connection: a CA bundle takes ~50 ms to load
        self._max_idle = max_idle
        self._idle: dict[_Key, list[_Connection]] = {}
        self._lock = threading.Lock()
        self._proxies = urllib.request.getproxies()  # read once, as the environment was

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    @contextmanager
    def stream(self, method: str, url: str, *, body: Body = None,
               headers: Mapping[str, str] | None = None,
               max_redirects: int | None = None) -> Iterator[Answer]:
        """Send one request and yield its answer, body unread; follows up to ``max_redirects``
        redirects (GET only) when given. The connection goes back to the pool if the body was
        read to its end."""
        for _ in range((max_redirects or 0) + 1):
            route = self._route(url)
            conn = self._connection(route)
            answer: Answer | None = None
            try:
                try:
                    answer = self._send(conn, route, method, body, headers)
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    if not (conn.kept and method in IDEMPOTENT and isinstance(body, bytes | None)):
                        raise
                    # The server closed the kept socket as it was reused (its idle timeout):
                    # nothing was done, so ask once more on a new one.
                    conn.close()
                    conn = self._fresh(route)
                    answer = self._send(conn, route, method, body, headers)
                if max_redirects is not None and answer.is_redirect:
                    url = urllib.parse.urljoin(url, answer.headers["Location"])
                    answer.skim()
                    continue
                yield answer
                return
            finally:
                self._release(route.key, conn, answer)
        raise TooManyRedirects(f"more than {max_redirects} redirects")

    # -- connections ---------------------------------------------------------------------------

    def _route(self, url: str) -> _Route:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise http.client.InvalidURL(f"not an http(s) URL: {url[:200]!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = urllib.parse.urlunsplit(("", "", _quoted(parts.path) or "/", _quoted(parts.query),
                                        ""))
        return _Route(url, (parts.scheme, parts.hostname, port), path,
                      proxy_for(parts, self._proxies))

    def _connection(self, route: _Route) -> _Connection:
        with self._lock:
            idle = self._idle.get(route.key, [])
            while idle:
                conn = idle.pop()
                if conn.sock is not None and not _readable(conn.sock):
                    return conn
                conn.close()  # closed by the server while idle (or it sent what nobody asked)
        return self._fresh(route)

    def _fresh(self, route: _Route) -> _Connection:
        scheme, host, port = route.key
        where = route.proxy
        if where is None:
            if scheme == "https":
                return _Tls(host, port, timeout=self._connect_s, context=self._tls())
            return _Plain(host, port, timeout=self._connect_s)
        if where.scheme != "http" or not where.hostname:
            raise http.client.InvalidURL(f"unsupported proxy {where.scheme}://{where.hostname}")
        if scheme == "http":  # absolute-form requests to the proxy itself
            return _Plain(where.hostname, where.port or 80, timeout=self._connect_s)
        tunnel = _Tls(where.hostname, where.port or 80, timeout=self._connect_s,
                      context=self._tls())
        tunnel.set_tunnel(host, port, headers=_proxy_auth(where))
        return tunnel

    def _release(self, key: _Key, conn: _Connection, answer: Answer | None) -> None:
        if answer is not None and answer.done:
            conn.kept = True
            with self._lock:
                idle = self._idle.setdefault(key, [])
                if len(idle) < self._max_idle:
                    idle.append(conn)
                    return
        if answer is not None:
            answer.close()  # an answer left unread holds the socket (its connection may not)
        conn.close()

    def _send(self, conn: _Connection, route: _Route, method: str, body: Body,
              headers: Mapping[str, str] | None) -> Answer:
        target, extra = route.path, dict(headers or {})
        if route.proxy is not None and route.key[0] == "http":  # the proxy is asked for the URL
            target, extra = route.url, {**_proxy_auth(route.proxy), **extra}
        if conn.sock is None:
            conn.connect()
        conn.sock.settimeout(self._timeout_s)
        conn.request(method, target, body=body, headers={**self._headers, **extra})
        return Answer(conn.getresponse())


# What may stand in a request target as it is (RFC 3986 pchar and query, and "%" of an escape).
_TARGET_SAFE = "/?:@!$&'()*+,;=-._~%"


def _quoted(text: str) -> str:
    """``text`` with what cannot go on the request line (spaces, non-ASCII, controls)
    percent-encoded as UTF-8; escapes already there are kept, as browsers and httpx do."""
    return urllib.parse.quote(text, safe=_TARGET_SAFE)


def _readable(sock: Any) -> bool:
    """An idle keep-alive socket with something to read was closed by the server."""
    try:
        if hasattr(select, "poll"):  # select() refuses descriptors past 1023 (many waits open)
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def proxy_for(url: urllib.parse.SplitResult,
              proxies: Mapping[str, str]) -> urllib.parse.SplitResult | None:
    """The proxy ``proxies`` (``urllib.request.getproxies()``) name for ``url``, parsed; None
    when there is none or ``NO_PROXY`` exempts the host."""
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(url.hostname or ""):
        return None
    return urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")


def _proxy_auth(where: urllib.parse.SplitResult) -> dict[str, str]:
    if where.username is None:
        return {}
    userinfo = f"{urllib.parse.unquote(where.username)}:{urllib.parse.unquote(where.password or '')}"
    return {"Proxy-Authorization": "Basic " + base64.b64encode(userinfo.encode()).decode()}
