"""The storage host: a second WSGI app (its own port when served), as storage.cloudconvert.com is
apart from api.cloudconvert.com. It answers like S3: XML errors, no JSON, no rate-limit headers,
no Authorization. Also the response faults both hosts share (trickle, redirect, oversize body).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from waitress.channel import ClientDisconnected
from werkzeug.wrappers import Request, Response

from ccwatch.emulator.faults import Fault, LoggedRequest
from ccwatch.emulator.files import handle_download, handle_upload, s3_error

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from ccwatch.emulator.core import Emulator

LOG = logging.getLogger("ccwatch.emulator")
S3_CODES = {500: ("InternalError", "We encountered an internal error. Please try again."),
            503: ("SlowDown", "Please reduce your request rate.")}


class Dropped(ClientDisconnected):
    """Raised after the socket was shut: waitress then closes the connection quietly."""


def drop_connection(environ: WSGIEnvironment) -> None:
    """Close the client's socket without a response (waitress exposes its channel here)."""
    probe = environ.get("waitress.client_disconnected")
    sock = getattr(getattr(probe, "__self__", None), "socket", None)
    if isinstance(sock, socket.socket):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise Dropped
    raise ConnectionAbortedError("the emulator dropped the connection")


def _one_byte_at_a_time(response: Response, seconds: float) -> Iterator[bytes]:
    try:
        for chunk in response.iter_encoded():
            for i in range(len(chunk)):
                yield chunk[i:i + 1]
                time.sleep(seconds)
    finally:
        response.close()  # e.g. the file a download streams from


def trickled(response: Response, fault: Fault) -> Response:
    """The same answer, its body sent one byte every ``fault.seconds``."""
    headers = dict(response.headers)
    return Response(_one_byte_at_a_time(response, fault.seconds),
                    status=response.status_code, headers=headers, direct_passthrough=True)


def redirected(request: Request) -> Response:
    """302 to the same resource, one more ``hop`` in the query (so each hop is a new URL)."""
    hop = int(request.args.get("hop", "0") or 0) + 1
    query = "&".join(p for p in request.query_string.decode("latin-1").split("&")
                     if p and not p.startswith("hop="))
    location = f"{request.base_url}?{query + '&' if query else ''}hop={hop}"
    return Response(status=302, headers={"Location": location})


def _json_padding(size: int) -> Iterator[bytes]:
    head, tail = b'{"data":{"id":"oversize","pad":"', b'"}}'
    left = max(0, size - len(head) - len(tail))
    yield head
    block = b"x" * (1 << 16)
    while left > 0:
        yield block[:left]
        left -= len(block)
    yield tail


def oversize(fault: Fault) -> Response:
    """A valid JSON body of ``fault.size`` bytes, generated while it is sent (chunked: no
    Content-Length warns the client, it has to count)."""
    return Response(_json_padding(max(fault.size, 40)), status=200, direct_passthrough=True,
                    headers={"Content-Type": "application/json"})


def storage_fault(fault: Fault) -> Response:
    code, message = S3_CODES.get(fault.status, ("AccessDenied", "Access Denied") if fault.status
                                 == 403 else ("InvalidRequest", "The request was refused."))
    response = s3_error(fault.status, code, message) if fault.body is None else Response(
        fault.body, status=fault.status, content_type="application/xml")
    if fault.retry_after is not None:
        response.headers["Retry-After"] = fault.retry_after
    return response


class StorageApp:
    """``POST /<bucket>`` (upload form) and ``GET|HEAD /<bucket>/<task id>/<name>`` (downloads)."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        if self.emu.storage_url is None:  # unserved (a WSGI transport)
            self.emu.storage_url = request.host_url.rstrip("/")
        entry = (request.method, request.path, request.query_string.decode("latin-1"))
        faults = self.emu.faults
        try:
            if faults.take("drop_connection", request.method, request.path):
                drop_connection(environ)
            response = self.handle(request)
        except (Dropped, ConnectionAbortedError):
            self.emu.log.add(LoggedRequest(*entry, 0, time.time()))
            raise
        except Exception:  # an emulator bug still answers like S3's 500
            LOG.exception("emulator storage error on %s %s", request.method, request.path)
            response = s3_error(500, *S3_CODES[500])
        finally:
            # An upload over 500 KB was spooled to a temp file: closed now, not whenever the
            # garbage collector gets to it (its ResourceWarning then lands in some later test).
            request.close()
        self.emu.log.add(LoggedRequest(*entry, response.status_code, time.time()))
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        emu, method, path = self.emu, request.method, request.path
        if fault := emu.faults.take("delay", method, path, after_work=False):
            time.sleep(fault.seconds)
        if fault := emu.faults.take("http_error", method, path, after_work=False):
            return storage_fault(fault)
        if emu.faults.take("redirect", method, path):
            return redirected(request)
        response = self.route(request)
        if fault := emu.faults.take("http_error", method, path, after_work=True):
            response = storage_fault(fault)  # the work is done; the client hears an error
        if fault := emu.faults.take("trickle", method, path):
            response = trickled(response, fault)
        return response

    def route(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/", 2)
        bucket = self.emu.signer.bucket
        if parts[0] != bucket:
            return s3_error(404, "NoSuchBucket", "The specified bucket does not exist")
        if len(parts) == 1 and request.method == "POST":
            return handle_upload(self.emu, request)
        if len(parts) == 3 and request.method in ("GET", "HEAD"):
            return handle_download(self.emu, request, parts[1], parts[2])
        if len(parts) == 1:
            return s3_error(405, "MethodNotAllowed",
                            "The specified method is not allowed against this resource.")
        return s3_error(404, "NoSuchKey", "The specified key does not exist.")
