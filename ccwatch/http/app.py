"""The WSGI app of the operator's endpoint (``[http] listen``) and its server.

A read-only Werkzeug app served by waitress on a daemon thread, like the webhook receiver. It shows
no secrets: no API key, no webhook secret, no download URLs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from loguru import logger
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.wrappers import Request, Response

from ccwatch.wsgiserve import serve_in_thread


class StatusApp:
    """``page`` (HTML) and ``metrics`` are made per request; ``health`` answers (ok, why)."""

    def __init__(self, *, page: Callable[[], str], metrics: Callable[[], bytes],
                 health: Callable[[], tuple[bool, str]]) -> None:
        self._page = page
        self._metrics = metrics
        self._health = health

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._handle(request)
        except Exception as exc:  # a broken page must never take the daemon down
            logger.opt(exception=exc).error("status page failed: {}", exc)
            response = Response("internal error\n", status=500, mimetype="text/plain")
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response("read-only: GET only\n", status=405, mimetype="text/plain",
                            headers={"Allow": "GET, HEAD"})
        if request.path == "/metrics":
            return Response(self._metrics(), mimetype=CONTENT_TYPE_LATEST)
        if request.path == "/healthz":
            ok, why = self._health()
            return Response(why + "\n", status=200 if ok else 503, mimetype="text/plain")
        if request.path in ("/", "/index.html"):
            response = Response(self._page(), mimetype="text/html")
            response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
            return response
        return Response("not found\n", status=404, mimetype="text/plain")


@contextmanager
def serve(app: StatusApp, host: str, port: int) -> Iterator[str]:
    """Serve on a daemon thread; yields ``http://host:port``. Raises OSError if it cannot bind."""
    with serve_in_thread(app, host=host, port=port, name="ccwatch-http", threads=2,
                         channel_timeout=10, max_request_body_size=1 << 16,
                         clear_untrusted_proxy_headers=True, ident="ccwatch") as bound_port:
        url = f"http://{host}:{bound_port}"
        logger.info("status page, /metrics and /healthz on {}", url)
        yield url
