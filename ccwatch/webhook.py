"""Webhook receiver: CloudConvert pushes ``job.finished`` / ``job.failed`` here.

A Werkzeug app served by waitress on a daemon thread. Every delivery is checked before anything is
believed: method, path, size (1 MiB), the ``CloudConvert-Signature`` HMAC-SHA256 of the raw body
(constant-time compare), JSON shape, and that the job is one we are tracking. It answers fast and
hands the job to the tracking stage; the poll sweep still runs slowly, so a lost delivery only delays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from loguru import logger
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from ccwatch.wsgiserve import serve_in_thread

MAX_BODY = 1 << 20
# waitress buffers a whole body before the app sees it: stop absurd ones there, but let a merely
# oversized one through so the refusal is ours and logged.
SERVER_BODY_LIMIT = 4 * MAX_BODY
SIGNATURE_HEADER = "CloudConvert-Signature"
EVENTS = ("job.finished", "job.failed")
# Ledger meta key: deliveries refused for a signature that does not match, since the daemon
# started ({"count", "since", "last_at"}); ``ccwatch status`` and ``check`` show it.
BAD_SIGNATURES = "webhook_bad_signatures"


def signature(body: bytes, secret: str) -> str:
    """Lowercase hex HMAC-SHA256 of the raw body, as CloudConvert signs it."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secret: str) -> bool:
    """Constant-time check of a ``CloudConvert-Signature`` header against the raw body."""
    if not header or not secret:
        return False
    # Bytes, not str: compare_digest raises on non-ASCII str, and a header is attacker-chosen.
    candidate = header.strip().lower().encode("utf-8", "replace")
    return hmac.compare_digest(signature(body, secret).encode(), candidate)


class Receiver:
    """The WSGI app. ``on_job(job)`` answers "accepted", "unknown" (not ours) or "done" (handled)."""

    def __init__(self, *, path: str, secret: str, on_job: Callable[[dict[str, Any]], str],
                 on_bad_signature: Callable[[int], None] | None = None,
                 on_refuse: Callable[[], None] = lambda: None) -> None:
        if not secret:
            raise ValueError("a webhook receiver needs a signing secret")
        self.path = path or "/"
        self._secret = secret
        self._on_job = on_job
        self._on_bad_signature = on_bad_signature  # called with the running count
        self._lock = threading.Lock()
        self.bad_signatures = 0
        self._on_refuse = on_refuse  # counts refusals for /metrics

    def __repr__(self) -> str:
        return f"Receiver(path={self.path!r}, secret=[secure])"

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = MAX_BODY
        response = self._handle(request)
        return response(environ, start_response)

    def _refuse(self, status: int, why: str, request: Request) -> Response:
        self._on_refuse()
        logger.warning("webhook refused ({}): {} from {}", status, why, request.remote_addr)
        return Response(json.dumps({"error": why}), status=status, mimetype="application/json")

    def _count_bad_signature(self) -> None:
        """Counted apart: many of these mean our secret is not the one CloudConvert signs with."""
        with self._lock:
            self.bad_signatures += 1
            count = self.bad_signatures
        if self._on_bad_signature is not None:
            self._on_bad_signature(count)

    def _handle(self, request: Request) -> Response:
        if request.path.rstrip("/") != self.path.rstrip("/"):
            return self._refuse(404, "unknown path", request)
        if request.method != "POST":
            return self._refuse(405, "only POST is accepted", request)
        if request.content_length is not None and request.content_length > MAX_BODY:
            return self._refuse(413, "body larger than 1 MiB", request)
        try:
            body = request.get_data(cache=False)
        except RequestEntityTooLarge:
            return self._refuse(413, "body larger than 1 MiB", request)
        if len(body) > MAX_BODY:
            return self._refuse(413, "body larger than 1 MiB", request)
        header = request.headers.get(SIGNATURE_HEADER)
        if not header:
            return self._refuse(401, "unsigned delivery", request)
        if not verify(body, header, self._secret):
            self._count_bad_signature()
            return self._refuse(401, "signature does not match", request)
        job = _job_of(body)
        if job is None:
            return self._refuse(400, "not a CloudConvert job event", request)
        try:
            verdict = self._on_job(job)
        except Exception as exc:
            # A 5xx makes CloudConvert retry the delivery; the safety poll covers the rest.
            logger.bind(job=job["id"]).opt(exception=exc).error("webhook handling failed: {}", exc)
            return Response(json.dumps({"error": "internal error"}), status=500,
                            mimetype="application/json")
        if verdict == "unknown":
            return self._refuse(404, f"job {job['id']} is not one of ours", request)
        if verdict != "accepted":
            return self._refuse(409, f"job {job['id']} was already handled", request)
        logger.bind(job=job["id"]).info("webhook: {}", job.get("status"))
        return Response(json.dumps({"ok": True}), status=200, mimetype="application/json")


def _job_of(body: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(body)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("event") not in EVENTS:
        return None
    job = event.get("job")
    if not isinstance(job, dict) or not isinstance(job.get("id"), str):
        return None
    return job


@contextmanager
def serve(receiver: Receiver, host: str, port: int) -> Iterator[str]:
    """Serve on a daemon thread; yields ``http://host:port``. Raises OSError if it cannot bind."""
    with serve_in_thread(receiver, host=host, port=port, name="ccwatch-webhook", threads=4,
                         channel_timeout=10, max_request_body_size=SERVER_BODY_LIMIT,
                         clear_untrusted_proxy_headers=True, ident="ccwatch") as bound_port:
        logger.info("webhook receiver listening on {}:{}{}", host, bound_port, receiver.path)
        yield f"http://{host}:{bound_port}"
