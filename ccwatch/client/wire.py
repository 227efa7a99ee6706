"""The HTTP/1.1 client under ``ccwatch.client.api``: requests written and answers read on plain sockets,
connections kept per host.

A file makes about five requests. A general client (httpx) cost ~1.2 ms of CPU each, and
``http.client`` ~0.5 ms (it parses every answer's headers with the ``email`` package and builds
the request a header at a time); this one writes the request in one piece and reads the answer's
head into a dict, and does what the API and storage hosts need and no more: keep-alive, TLS with
the process's one context, an environment proxy (``HTTP(S)_PROXY``, ``NO_PROXY``; https through
``CONNECT``), redirects for downloads, bodies streamed both ways in 1 MiB pieces; answers are
read by ``ccwatch.client.framing``. Every socket operation
waits at most until the running exchange's ``deadline.Budget`` runs out. Raises OSError
(TimeoutError when out of time), ``http.client.HTTPException`` for a broken answer and
``TooManyRedirects``; ``ccwatch.client.api`` turns them into ``ccwatch.errors`` classes.
"""

from __future__ import annotations

import base64
import http.client
import re
import select
import socket
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ccwatch.client.deadline import BoundedSocket
from ccwatch.client.framing import CHUNK, Answer, read_head
from ccwatch.errors import TooManyRedirects

IDEMPOTENT = ("GET", "HEAD", "DELETE", "PUT")
Body = bytes | Iterable[bytes] | None
_Key = tuple[str, str, int]
_Origin = tuple[_Key, str, urllib.parse.SplitResult | None]  # key, Host header, proxy
MAX_ORIGINS = 256  # origins remembered (the API, sync and storage hosts: a handful)


class _Connection:
    """One socket to a host (or to the proxy carrying its requests) and the reader of its
    answers; ``kept`` once it carried an exchange (the server may have closed it since)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = BoundedSocket(sock)
        self.file = self.sock.reader(64 << 10)
        self.kept = False

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@dataclass(frozen=True, slots=True)
class _Route:
    """Where one request goes: its URL, the pool it draws from, its target without a proxy,
    the Host it names, and the proxy the environment names for it."""

    url: str
    key: _Key
    path: str
    host: str
    proxy: urllib.parse.SplitResult | None


class Client:
    """Safe to share between threads: each exchange has a connection of its own."""

    def __init__(self, *, headers: Mapping[str, str], timeout_s: float, connect_s: float,
                 tls: Callable[[], ssl.SSLContext], max_idle: int = 32) -> None:
        self._headers = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._lines = len(headers) + 4  # request line, Host, Accept-Encoding, end of head
        self._timeout_s = timeout_s
        self._connect_s = connect_s
        self._tls = tls  # called for the first https connection: a CA bundle takes ~50 ms to load
        self._max_idle = max_idle
        self._idle: dict[_Key, list[_Connection]] = {}
        self._lock = threading.Lock()
        self._proxies = urllib.request.getproxies()  # read once, as the environment was
        self._origins: dict[tuple[str, str], _Origin] = {}  # (scheme, netloc) → origin

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
        origin = self._origins.get((parts.scheme, parts.netloc))
        if origin is None:
            origin = self._origin(url, parts)
        path, query = _quoted(parts.path) or "/", _quoted(parts.query)
        return _Route(url, origin[0], f"{path}?{query}" if query else path, *origin[1:])

    def _origin(self, url: str, parts: urllib.parse.SplitResult) -> _Origin:
        """Where a scheme and host lead (key, Host header, proxy): worked out once per origin,
        as NO_PROXY matching reads the environment."""
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise http.client.InvalidURL(f"not an http(s) URL: {url[:200]!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        named = _host_name(host)
        if port != (443 if parts.scheme == "https" else 80):
            named = f"{named}:{port}"
        origin = ((parts.scheme, host, port), named, proxy_for(parts, self._proxies))
        if len(self._origins) >= MAX_ORIGINS:
            self._origins.clear()
        self._origins[(parts.scheme, parts.netloc)] = origin
        return origin

    def _connection(self, route: _Route) -> _Connection:
        with self._lock:
            idle = self._idle.get(route.key, [])
            while idle:
                conn = idle.pop()
                if not _readable(conn.sock):
                    return conn
                conn.close()  # closed by the server while idle (or it sent what nobody asked)
        return self._fresh(route)

    def _fresh(self, route: _Route) -> _Connection:
        scheme, host, port = route.key
        where = route.proxy
        if where is not None and (where.scheme != "http" or not where.hostname):
            raise http.client.InvalidURL(f"unsupported proxy {where.scheme}://{where.hostname}")
        address = (host, port) if where is None else (where.hostname or "", where.port or 80)
        sock = socket.create_connection(address, self._connect_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if where is not None and scheme == "https":
                _tunnel(sock, f"{_host_name(host)}:{port}", _proxy_auth(where))
            if scheme == "https":
                sock = self._tls().wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        return _Connection(sock)

    def _release(self, key: _Key, conn: _Connection, answer: Answer | None) -> None:
        if answer is not None and answer.done:
            conn.kept = True
            with self._lock:
                idle = self._idle.setdefault(key, [])
                if len(idle) < self._max_idle:
                    idle.append(conn)
                    return
        conn.close()

    def _send(self, conn: _Connection, route: _Route, method: str, body: Body,
              headers: Mapping[str, str] | None) -> Answer:
        target, extra = route.path, dict(headers or {})
        if route.proxy is not None and route.key[0] == "http":  # the proxy is asked for the URL
            target, extra = _quoted(route.url), {**_proxy_auth(route.proxy), **extra}
        if isinstance(body, bytes):
            extra["Content-Length"] = str(len(body))
        elif body is None and method in ("POST", "PUT", "PATCH"):
            extra["Content-Length"] = "0"
        elif body is not None and "Content-Length" not in extra:
            raise ValueError("a streamed body needs its Content-Length")
        head = (f"{method} {target} HTTP/1.1\r\nHost: {route.host}\r\n{self._headers}"
                "Accept-Encoding: identity\r\n"
                + "".join(f"{name}: {value}\r\n" for name, value in extra.items()) + "\r\n")
        lines = self._lines + len(extra)
        if head.count("\n") != lines or head.count("\r") != lines:
            raise http.client.InvalidURL("a line break in a request's target or header")
        conn.sock.settimeout(self._timeout_s)
        _write(conn.sock, head.encode("latin-1"), body)
        return Answer(conn.file, method)


def _write(sock: BoundedSocket, head: bytes, body: Body) -> None:
    """The request: small pieces gathered into one send (no Nagle/delayed-ACK stall between the
    head and a small body), big ones sent as they are."""
    if body is None or isinstance(body, bytes):
        sock.sendall(head + body if body else head)
        return
    pending, size = [head], len(head)
    for piece in body:
        if len(piece) >= CHUNK:
            sock.sendall(b"".join(pending))
            sock.sendall(piece)
            pending, size = [], 0
            continue
        pending.append(piece)
        size += len(piece)
        if size >= CHUNK:
            sock.sendall(b"".join(pending))
            pending, size = [], 0
    if pending:
        sock.sendall(b"".join(pending))


def _tunnel(sock: socket.socket, where: str, auth: Mapping[str, str]) -> None:
    """Ask an HTTP proxy for a tunnel to ``where`` (host:port) on ``sock``."""
    request = f"CONNECT {where} HTTP/1.1\r\nHost: {where}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in auth.items()) + "\r\n"
    sock.sendall(request.encode("latin-1"))
    with sock.makefile("rb", 0) as file:  # unbuffered: the TLS handshake's bytes stay unread
        _, status, reason, _ = read_head(file)
    if status != 200:
        raise OSError(f"the proxy refused a tunnel to {where}: {status} {reason}")


def _host_name(host: str) -> str:
    """``host`` as a Host header or CONNECT target names it."""
    if ":" in host:
        return f"[{host}]"  # an IPv6 address
    return host if host.isascii() else host.encode("idna").decode("ascii")


# What may stand in a request target as it is (RFC 3986 pchar and query, and "%" of an escape).
_TARGET_SAFE = "/?:@!$&'()*+,;=-._~%"


_NEEDS_QUOTING = re.compile(r"[^A-Za-z0-9/?:@!$&'()*+,;=\-._~%]")


def _quoted(text: str) -> str:
    """``text`` with what cannot go on the request line (spaces, non-ASCII, controls)
    percent-encoded as UTF-8; escapes already there are kept, as browsers and httpx do."""
    if not _NEEDS_QUOTING.search(text):
        return text  # the usual case, as API and storage hosts write their URLs
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
