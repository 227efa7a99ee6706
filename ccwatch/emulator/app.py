"""The WSGI app: request log, faults, auth and rate limits around the routes; the control endpoints."""

from __future__ import annotations

import dataclasses
import hmac
import logging
import math
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.wrappers import Request, Response

from ccwatch.emulator.faults import Fault, LoggedRequest
from ccwatch.emulator.routes import CREATES, HANDLERS, URLS, BadJson, error, json_response
from ccwatch.emulator.storage import Dropped, drop_connection, oversize, trickled
from ccwatch.emulator.validation import Invalid

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from ccwatch.emulator.core import Emulator

LOG = logging.getLogger("ccwatch.emulator")
PUBLIC = frozenset({"formats", "operations"})
UNCOUNTED = frozenset({"user"})  # users/me answers without rate-limit headers (recorded)
REASONS = {400: "Bad Request", 401: "Unauthenticated.", 403: "Forbidden", 404: "Not Found",
           408: "Request Timeout", 409: "Conflict", 410: "Gone", 413: "Payload Too Large",
           422: "The given data was invalid.", 500: "Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}


def fault_response(fault: Fault) -> Response:
    response = _fault_body(fault)
    if fault.retry_after is not None:
        response.headers["Retry-After"] = fault.retry_after
    return response


def _fault_body(fault: Fault) -> Response:
    if fault.body is not None:
        kind = "application/json" if fault.body.lstrip().startswith("{") else "text/html"
        return Response(fault.body, status=fault.status, content_type=kind)
    reason = REASONS.get(fault.status, "Error")
    if fault.status in (502, 503, 504):  # gateways answer HTML, not the API's JSON
        return Response(f"<html><body><h1>{fault.status} {reason}</h1></body></html>",
                        status=fault.status, content_type="text/html")
    if fault.status == 500:
        return error(500, "Server Error", "INTERNAL_ERROR")
    return error(fault.status, reason, reason.upper().replace(" ", "_").strip("."))


def too_many(retry_after_s: float, limit: int) -> Response:
    return error(429, "Too Many Requests", "TOO_MANY_REQUESTS", {
        "Retry-After": str(max(0, math.ceil(retry_after_s))),
        "X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": "0"})


class EmulatorApp:
    """The emulator over HTTP: built by :func:`ccwatch.emulator.server.wsgi_app`; all its state
    (including the rate-limit window) lives in the ``Emulator``, so serving it again keeps it."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        if self.emu.base_url is None:  # unserved (a WSGI transport): links use the request's host
            self.emu.base_url = request.host_url.rstrip("/")
        if request.path.startswith("/__emulator__/"):
            return self.control(request)(environ, start_response)
        entry = (request.method, request.path, request.query_string.decode("latin-1"))
        try:
            response = self.handle(request)
        except (Dropped, ConnectionAbortedError):
            self.emu.log.add(LoggedRequest(*entry, 0, time.time()))
            raise
        except Exception:  # an emulator bug still answers like the API's 500
            LOG.exception("emulator error on %s %s", request.method, request.path)
            response = error(500, "Server Error", "INTERNAL_ERROR")
        self.emu.log.add(LoggedRequest(*entry, response.status_code, time.time()))
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        emu, method, path = self.emu, request.method, request.path
        if emu.faults.take("drop_connection", method, path):
            drop_connection(request.environ)
        try:
            endpoint, args = URLS.bind_to_environ(request.environ).match()
        except MethodNotAllowed:
            return error(405, "Method Not Allowed", "METHOD_NOT_ALLOWED")
        except NotFound:
            return error(404, "Not Found", "NOT_FOUND")
        except HTTPException as exc:  # e.g. a redirect for a trailing slash
            return error(exc.code or 400, exc.description or "Bad Request")
        refused, limit_headers = self.gate(request, endpoint)
        if refused is not None:
            return refused
        if fault := emu.faults.take("delay", method, path, after_work=False):
            time.sleep(fault.seconds)
        if fault := emu.faults.take("oversize_body", method, path):
            return oversize(fault)
        response = self.run(endpoint, request, args)
        if fault := emu.faults.take("delay", method, path, after_work=True):
            time.sleep(fault.seconds)
        if fault := emu.faults.take("http_error", method, path, after_work=True):
            response = fault_response(fault)  # the work is done; the client hears an error
        response.headers.update(limit_headers)
        if fault := emu.faults.take("trickle", method, path):
            response = trickled(response, fault)
        return response

    def gate(self, request: Request, endpoint: str) -> tuple[Response | None, dict[str, str]]:
        """Auth, rate limits and before-work faults: (a refusal or None, rate-limit headers)."""
        emu, method, path = self.emu, request.method, request.path
        unauthorized = endpoint not in PUBLIC and (
            emu.faults.take("unauthorized", method, path) or not self.authorized(request))
        if unauthorized:
            return error(401, "Unauthenticated.", "UNAUTHENTICATED"), {}
        if fault := emu.faults.take("rate_limit", method, path):
            return too_many(fault.retry_after_s, emu.rate_limit_per_minute), {}
        limit_headers: dict[str, str] = {}
        # The main host counts; users/me, the sync host and the storage host send no headers.
        if path.startswith("/v2/") and endpoint not in UNCOUNTED:
            group = "create" if endpoint in CREATES else "other"
            remaining, reset = emu.rate_windows[group].take(emu.rate_limit_per_minute,
                                                            emu.rate_window_s)
            if remaining < 0:
                return too_many(reset, emu.rate_limit_per_minute), {}
            limit_headers = {"X-RateLimit-Limit": str(emu.rate_limit_per_minute),
                             "X-RateLimit-Remaining": str(remaining)}
        if endpoint in CREATES and emu.faults.take("credits_exceeded", method, path):
            return error(402, "Your account has run out of conversion minutes",
                         "CREDITS_EXCEEDED"), {}
        if endpoint in ("create_job", "sync_create_job") and emu.too_many_jobs():
            # cloudconvert-php issue #98 records this message; its code was not recorded.
            return error(402, "You have started too many jobs at once"), {}
        if fault := emu.faults.take("http_error", method, path, after_work=False):
            return fault_response(fault), {}
        return None, limit_headers

    def run(self, endpoint: str, request: Request, args: Mapping[str, Any]) -> Response:
        try:
            return HANDLERS[endpoint](self.emu, request, **args)
        except Invalid as exc:
            return json_response(exc.body(), 422)
        except BadJson as exc:
            return json_response({"message": "The given data was invalid.", "code": "INVALID_DATA",
                                  "errors": {"body": [f"Malformed JSON: {exc}"]}}, 400)

    def authorized(self, request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(key.strip(), self.emu.api_key)

    def control(self, request: Request) -> Response:
        """``/__emulator__/faults`` (GET list, POST add, DELETE clear) and ``.../requests``."""
        emu, what, method = self.emu, request.path.removeprefix("/__emulator__/"), request.method
        if what == "faults" and method == "GET":
            return json_response({"data": emu.faults.listing()})
        if what == "faults" and method == "POST":
            spec = request.get_json(silent=True)
            try:
                if not isinstance(spec, dict):
                    raise ValueError("the body must be a JSON object with a 'kind'")
                fault = emu.faults.add_from_json(spec)
            except (TypeError, ValueError) as exc:
                return error(400, str(exc), "INVALID_FAULT")
            return json_response({"data": dataclasses.asdict(fault) if fault else None}, 201)
        if what == "faults" and method == "DELETE":
            emu.faults.clear()
            return Response(status=204)
        if what == "requests" and method == "GET":
            return json_response({"data": [r._asdict() for r in emu.requests]})
        if what == "requests" and method == "DELETE":
            emu.log.clear()
            return Response(status=204)
        if what == "uploads" and method == "GET":
            return json_response({"data": [u._asdict() for u in emu.uploads()]})
        if what == "webhooks" and method == "GET":
            return json_response({"data": [d._asdict() for d in emu.webhook_deliveries()]})
        return error(404, "Not Found", "NOT_FOUND")
