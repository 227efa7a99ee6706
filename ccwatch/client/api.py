"""CloudConvert API v2 client over ``ccwatch.client.wire``: the one boundary that maps HTTP into ``errors``.

Every network exception and every non-2xx answer becomes a ``ccwatch.errors`` class here, with the
job, task and path it concerned; nothing outside this module sees the wire. No retries happen here:
the pipeline decides when to try again, so a waiting file never holds a thread.

Every exchange runs against a total deadline (``timeout_s``), not a per-read timeout: a server
that trickles a byte every few seconds would otherwise hold a worker for ever. File transfers get
``timeout_s`` plus the time their bytes take at ``MIN_RATE``, so big files still finish and a stall
does not. Answers that are not files are read up to ``MAX_BODY`` bytes, never more.
"""

from __future__ import annotations

import email.utils
import functools
import http.client
import json as jsonlib
import mimetypes
import os
import re
import ssl
import time
import urllib.parse
import uuid
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, BinaryIO, Protocol

from ccwatch import __version__
from ccwatch.client.deadline import Budget, deadline
from ccwatch.client.framing import CHUNK, Answer
from ccwatch.client.wire import Client
from ccwatch.clock import Clock
from ccwatch.errors import (
    AccountError,
    CcwatchError,
    CreateRateLimited,
    FileError,
    FormRefused,
    OutputGone,
    RateLimited,
    TooManyRedirects,
    TransientError,
)

USER_AGENT = f"ccwatch/{__version__}"
MAX_BODY = 32 << 20  # an API answer larger than this is refused (a job with 10,000s of files fits)
ERROR_BODY = 64 << 10  # what is read of a refused transfer to tell why
MIN_RATE = 16 << 10  # bytes/s a transfer must average, after its first timeout_s, to go on
MAX_REDIRECTS = 5
CONNECT_S = 15.0


# -- answers → errors ----------------------------------------------------------------------------

class Headers(Protocol):
    def get(self, name: str) -> str | None: ...


def _body(content: bytes) -> dict[str, Any]:
    try:
        data = jsonlib.loads(content)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in either form: delta-seconds, or an HTTP date (seconds from ``now``)."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_for(status: int, headers: Headers, content: bytes, reason: str = "", *,
              limited: type[RateLimited] = RateLimited, **context: Any) -> CcwatchError:
    """The error class for a non-2xx API answer and its body (``limited``: for a 429)."""
    body = _body(content)
    code = body.get("code") if isinstance(body.get("code"), str) else None
    message = str(body.get("message") or reason or f"HTTP {status}")
    errors = body.get("errors")
    if isinstance(errors, dict) and errors:
        details = "; ".join(f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
                            for k, v in errors.items())
        message = f"{message} ({details})"
    kw = {"code": code, "http_status": status, **context}
    wait = retry_after_s(headers.get("Retry-After"))
    if status == 429:
        return limited(f"rate limited: {message}", retry_after_s=wait, **kw)
    if status >= 500 or status in (408, 409, 425):
        return TransientError(f"server error {status}: {message}", retry_after_s=wait, **kw)
    if status == 401:
        return AccountError(f"API key rejected (401): {message}", **kw)
    if status == 402:
        return AccountError(f"account cannot start jobs (402): {message}", **kw)
    if status == 403:
        return AccountError(f"API key lacks a scope (403): {message}", **kw)
    return FileError(f"request refused ({status}): {message}", **kw)


def _storage_error(response: Answer, what: str, **context: Any) -> CcwatchError:
    """The storage host answers like S3 (XML, no API codes): 429/5xx wait, the rest is refused."""
    status = response.status_code
    wait = retry_after_s(response.headers.get("Retry-After"))
    kw = {"code": f"STORAGE_{status}", "http_status": status, **context}
    if status == 429:
        return RateLimited(f"{what}: storage host busy (429)", retry_after_s=wait, **kw)
    if status >= 500 or status in (408, 425):
        return TransientError(f"{what}: storage host error {status}", retry_after_s=wait, **kw)
    return FileError(f"{what}: refused by the storage host ({status})", **kw)


def _read_capped(response: Answer, limit: int, what: str, **context: Any) -> bytes:
    declared = response.headers.get("Content-Length") or ""
    if declared.isdigit() and int(declared) > limit:
        raise TransientError(f"{what}: a {int(declared)}-byte answer is over the {limit}-byte limit",
                             code="RESPONSE_TOO_LARGE", **context)
    parts: list[bytes] = []
    size = 0
    for chunk in response.chunks():
        size += len(chunk)
        if size > limit:
            raise TransientError(f"{what}: the answer passed the {limit}-byte limit; refused",
                                 code="RESPONSE_TOO_LARGE", **context)
        parts.append(chunk)
    return b"".join(parts)


# What the wire raises: the network (OSError: refused, reset, timed out) or a broken answer.
NETWORK_ERRORS = (OSError, http.client.HTTPException, zlib.error)


def _network(exc: Exception, what: str, **context: Any) -> TransientError:
    if isinstance(exc, TimeoutError):
        return TransientError(f"{what} timed out", code="TIMEOUT", **context)
    if isinstance(exc, TooManyRedirects):
        return TransientError(f"{what}: more than {MAX_REDIRECTS} redirects", code="REDIRECTS",
                              **context)
    return TransientError(f"network error on {what}: {exc}", code="NETWORK", **context)


class CreatePacing(Protocol):
    """Told about every job creation, to pace the next ones (``ccwatch.pipeline.pacing``)."""

    def answered(self, sent: float, now: float, remaining: int | None) -> None: ...

    def refused(self, sent: float, now: float, retry_after_s: float | None) -> None: ...

    def failed(self, sent: float) -> None: ...


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The one TLS context every client of this process shares, made at the first https
    connection: each loads the CA bundle (about 50 ms of CPU). Honours SSL_CERT_FILE / _DIR."""
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or None,
                                          capath=os.environ.get("SSL_CERT_DIR") or None)
    import certifi  # Mozilla's bundle, as before: not every platform's Python has a CA store

    return ssl.create_default_context(cafile=certifi.where())


class CloudConvertClient:
    """Synchronous client; safe to share between worker threads."""

    def __init__(self, base_url: str, sync_base_url: str, api_key: str | None, *,
                 timeout_s: float, clock: Clock, pacing: CreatePacing | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.sync_base_url = sync_base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._clock = clock
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        connect_s = min(timeout_s, CONNECT_S)
        self._api = Client(headers=headers, timeout_s=timeout_s, connect_s=connect_s,
                           tls=tls_context)
        # Upload forms and export URLs are pre-signed: they must never see the Authorization header.
        self._storage = Client(headers={"User-Agent": USER_AGENT}, timeout_s=timeout_s,
                               connect_s=connect_s, tls=tls_context)
        self._pacing = pacing

    def close(self) -> None:
        self._api.close()
        self._storage.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _call(self, method: str, route: str, *, params: Mapping[str, Any] | None = None,
              json: Any = None, note_rate: bool = False, **context: Any) -> dict[str, Any]:
        what = f"{method} {route}"
        pacing = self._pacing if note_rate else None
        sent = self._clock.monotonic() if pacing else 0.0
        url = self.base_url + route
        if params:
            url += "?" + urllib.parse.urlencode(params)
        body, headers = (None, None) if json is None else (
            jsonlib.dumps(json).encode(), {"Content-Type": "application/json"})
        try:
            with deadline(Budget(self.timeout_s)), \
                    self._api.stream(method, url, body=body, headers=headers) as response:
                limit = MAX_BODY if response.is_success else ERROR_BODY
                content = _read_capped(response, limit, what, **context)
        except NETWORK_ERRORS as exc:
            if pacing:
                pacing.failed(sent)
            raise _network(exc, what, **context) from exc
        if pacing:
            self._note_rate(pacing, sent, response)
        if not response.is_success:
            raise error_for(response.status_code, response.headers, content,
                            response.reason_phrase,
                            limited=CreateRateLimited if pacing else RateLimited, **context)
        try:
            data = jsonlib.loads(content) if content.strip() else {}
        except ValueError:
            raise TransientError(f"{what}: the answer is not JSON", code="BAD_RESPONSE",
                                 **context) from None
        return data if isinstance(data, dict) else {}

    def _note_rate(self, pacing: CreatePacing, sent: float, response: Answer) -> None:
        now = self._clock.monotonic()
        if response.status_code == 429:
            pacing.refused(sent, now, retry_after_s(response.headers.get("Retry-After")))
            return
        remaining = (response.headers.get("X-RateLimit-Remaining") or "").strip()
        pacing.answered(sent, now, int(remaining) if remaining.lstrip("-").isdigit() else None)

    # -- jobs and tasks ------------------------------------------------------------------------

    def create_job(self, payload: Mapping[str, Any], *, path: str) -> dict[str, Any]:
        # Creations are counted in their own window (recorded): only their answers tell its state.
        body = self._call("POST", "/v2/jobs", json=payload, note_rate=True, path=path)
        return _data(body, "job", path=path)

    def find_jobs_by_tag(self, tag: str, *, path: str) -> list[dict[str, Any]]:
        body = self._call("GET", "/v2/jobs", params={"filter[tag]": tag, "include": "tasks"},
                          path=path)
        data = body.get("data")
        return [j for j in data if isinstance(j, dict)] if isinstance(data, list) else []

    def get_job(self, job_id: str, *, path: str) -> dict[str, Any]:
        body = self._call("GET", f"/v2/jobs/{job_id}", params={"include": "tasks"},
                          job_id=job_id, path=path)
        return _data(body, "job", job_id=job_id, path=path)

    def get_task(self, task_id: str, *, job_id: str, path: str) -> dict[str, Any]:
        body = self._call("GET", f"/v2/tasks/{task_id}", job_id=job_id, path=path)
        return _data(body, "task", job_id=job_id, path=path)

    def delete_job(self, job_id: str, *, path: str) -> None:
        self._call("DELETE", f"/v2/jobs/{job_id}", job_id=job_id, path=path)

    def me(self) -> dict[str, Any]:
        return _data(self._call("GET", "/v2/users/me"), "user")

    # -- files ---------------------------------------------------------------------------------

    def upload(self, form: Mapping[str, Any], file: BinaryIO, filename: str, *, job_id: str,
               task: str) -> None:
        """POST the open file to the task's pre-signed form, streamed, fields first, file last.

        A 403 is the form's problem (expired or refused), raised as ``FormRefused`` for the
        submit stage to renew; it says nothing about the account.
        """
        url = form.get("url")
        params = form.get("parameters") or {}
        if not isinstance(url, str) or not isinstance(params, dict):
            raise FileError("upload task has no usable form", code="NO_UPLOAD_FORM",
                            job_id=job_id, task=task, path=filename)
        fields = {str(k): str(v) for k, v in params.items()}
        ctx: dict[str, Any] = {"job_id": job_id, "task": task, "path": filename}
        try:
            body, headers = _multipart(fields, filename, file)
            with deadline(Budget(self.timeout_s, MIN_RATE)), \
                    self._storage.stream("POST", url, body=body, headers=headers) as response:
                # S3 answers 201; legacy hosts 200/204 or a redirect to /v2/upload/redirect/…
                if response.status_code in (200, 201, 204) or response.is_redirect:
                    response.skim(ERROR_BODY)  # S3's little XML: read, so the socket is kept
                    return
                _read_capped(response, ERROR_BODY, "upload", **ctx)
        except NETWORK_ERRORS as exc:
            raise _network(exc, "upload", **ctx) from exc
        if response.status_code == 403:
            raise FormRefused("the storage host refused the upload form (403: expired or invalid)",
                              form=dict(form), code="FORM_REFUSED", http_status=403, **ctx)
        raise _storage_error(response, "upload", **ctx)

    @contextmanager
    def download(self, url: str, *, job_id: str, path: str) -> Iterator[Iterator[bytes]]:
        """Stream an export URL (following up to MAX_REDIRECTS redirects).

        404/410 mean the output is gone; 403 that its URL expired (``OutputGone`` both: the
        caller asks the job for a fresh URL once); 429/5xx wait and try again.
        """
        ctx: dict[str, Any] = {"job_id": job_id, "path": path}
        try:
            with deadline(Budget(self.timeout_s, MIN_RATE)), \
                    self._storage.stream("GET", url, max_redirects=MAX_REDIRECTS) as response:
                if not response.is_success:
                    _read_capped(response, ERROR_BODY, "download", **ctx)
                    status = response.status_code
                    if status in (403, 404, 410):
                        raise OutputGone(f"output no longer available ({status})",
                                         code="OUTPUT_GONE", http_status=status, **ctx)
                    raise _storage_error(response, "download", **ctx)
                yield _guarded(response.chunks(), ctx)
        except NETWORK_ERRORS as exc:
            raise _network(exc, "download", **ctx) from exc


def _guarded(chunks: Iterator[bytes], ctx: dict[str, Any]) -> Iterator[bytes]:
    """Re-raise transport errors met while the body streams (they arise lazily)."""
    try:
        yield from chunks
    except NETWORK_ERRORS as exc:
        raise _network(exc, "download", **ctx) from exc


def _data(body: dict[str, Any], what: str, **context: Any) -> dict[str, Any]:
    data = body.get("data")
    if not isinstance(data, dict) or "id" not in data:
        raise TransientError(f"malformed {what} response from the API", code="BAD_RESPONSE",
                             **context)
    return data


# HTML5 form encoding of a field's name or filename (as browsers and httpx send them).
_FORM_ESCAPES = {'"': "%22", "\\": "\\\\",
                 **{chr(c): f"%{c:02X}" for c in range(0x20) if c != 0x1B}}
_FORM_ESCAPE = re.compile("|".join(map(re.escape, _FORM_ESCAPES)))


def _form_param(name: str, value: str) -> str:
    return f'{name}="{_FORM_ESCAPE.sub(lambda m: _FORM_ESCAPES[m.group(0)], value)}"'


def _multipart(fields: Mapping[str, str], filename: str,
               file: BinaryIO) -> tuple[Iterator[bytes], dict[str, str]]:
    """A multipart/form-data body, fields first and the file last, streamed from the file's
    start in CHUNK pieces; its length is known (the storage host refuses chunked uploads)."""
    boundary = uuid.uuid4().hex
    head = "".join(f"--{boundary}\r\nContent-Disposition: form-data; {_form_param('name', k)}"
                   f"\r\n\r\n{v}\r\n" for k, v in fields.items())
    kind = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    head += (f"--{boundary}\r\nContent-Disposition: form-data; {_form_param('name', 'file')}; "
             f"{_form_param('filename', filename)}\r\nContent-Type: {kind}\r\n\r\n")
    start, tail = head.encode(), f"\r\n--{boundary}--\r\n".encode()
    size = os.fstat(file.fileno()).st_size
    file.seek(0)

    def pieces() -> Iterator[bytes]:
        yield start
        left = size
        while left > 0 and (chunk := file.read(min(CHUNK, left))):
            left -= len(chunk)
            yield chunk
        if left:  # the file shrank while it was sent: the length said cannot be kept
            raise OSError(f"{filename} shrank by {left} bytes during its upload")
        yield tail

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
               "Content-Length": str(len(start) + size + len(tail))}
    return pieces(), headers
