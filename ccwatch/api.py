"""CloudConvert API v2 client over ``httpx.Client``: the one boundary that maps HTTP into ``errors``.

Every httpx exception and every non-2xx answer becomes a ``ccwatch.errors`` class here, with the job,
task and path it concerned; nothing outside this module sees httpx. No retries happen here: the
pipeline decides when to try again, so a waiting file never holds a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, BinaryIO

import httpx

from ccwatch import __version__
from ccwatch.clock import Clock
from ccwatch.errors import (
    AccountError,
    CcwatchError,
    FileError,
    OutputGone,
    RateLimited,
    TransientError,
)

USER_AGENT = f"ccwatch/{__version__}"
# Below this many requests left in the server's window, job creation slows to one per second.
RATE_LOW_WATER = 5
_CHUNK = 1 << 20


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date; the caller's backoff applies


def error_for(response: httpx.Response, **context: Any) -> CcwatchError:
    """The error class for a non-2xx API answer (exported for the webhook and status code paths)."""
    status = response.status_code
    body = _body(response)
    code = body.get("code") if isinstance(body.get("code"), str) else None
    message = str(body.get("message") or response.reason_phrase or f"HTTP {status}")
    errors = body.get("errors")
    if isinstance(errors, dict) and errors:
        details = "; ".join(f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
                            for k, v in errors.items())
        message = f"{message} ({details})"
    kw = {"code": code, "http_status": status, **context}
    if status == 429:
        return RateLimited(f"rate limited: {message}", retry_after_s=_retry_after(response), **kw)
    if status >= 500 or status in (408, 409, 425):
        return TransientError(f"server error {status}: {message}",
                              retry_after_s=_retry_after(response), **kw)
    if status == 401:
        return AccountError(f"API key rejected (401): {message}", **kw)
    if status == 402:
        return AccountError(f"account cannot start jobs (402): {message}", **kw)
    if status == 403:
        return AccountError(f"API key lacks a scope (403): {message}", **kw)
    return FileError(f"request refused ({status}): {message}", **kw)


class CloudConvertClient:
    """Synchronous client; safe to share between worker threads."""

    def __init__(self, base_url: str, sync_base_url: str, api_key: str | None, *,
                 timeout_s: float, clock: Clock) -> None:
        self.base_url = base_url.rstrip("/")
        self.sync_base_url = sync_base_url.rstrip("/")
        self._clock = clock
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0))
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._api = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                 limits=limits)
        # Upload forms and export URLs are pre-signed: they must never see the Authorization header.
        self._storage = httpx.Client(headers={"User-Agent": USER_AGENT}, timeout=timeout,
                                     limits=limits, follow_redirects=False)
        self._rate_lock = threading.Lock()
        self._rate_remaining: int | None = None
        self._next_create_at = 0.0

    def close(self) -> None:
        self._api.close()
        self._storage.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _call(self, method: str, route: str, *, params: Mapping[str, Any] | None = None,
              json: Any = None, **context: Any) -> dict[str, Any]:
        try:
            response = self._api.request(method, route, params=params, json=json)
        except httpx.TimeoutException as exc:
            raise TransientError(f"timed out: {method} {route}", code="TIMEOUT", **context) from exc
        except httpx.TransportError as exc:
            raise TransientError(f"network error on {method} {route}: {exc}", code="NETWORK",
                                 **context) from exc
        self._note_rate(response)
        if response.is_success:
            return _body(response)
        raise error_for(response, **context)

    def _note_rate(self, response: httpx.Response) -> None:
        remaining = response.headers.get("X-RateLimit-Remaining")
        if remaining is None or not remaining.strip().lstrip("-").isdigit():
            return
        with self._rate_lock:
            self._rate_remaining = int(remaining)

    def create_delay(self) -> float:
        """Seconds to hold back the next job creation (client-side limit when the window runs low)."""
        with self._rate_lock:
            if self._rate_remaining is None or self._rate_remaining > RATE_LOW_WATER:
                return 0.0
            return max(0.0, self._next_create_at - self._clock.monotonic())

    # -- jobs and tasks ------------------------------------------------------------------------

    def create_job(self, payload: Mapping[str, Any], *, path: str) -> dict[str, Any]:
        with self._rate_lock:
            self._next_create_at = self._clock.monotonic() + 1.0
        body = self._call("POST", "/v2/jobs", json=payload, path=path)
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
        """POST the open file to the task's pre-signed form, streamed, fields first, file last."""
        url = form.get("url")
        params = form.get("parameters") or {}
        if not isinstance(url, str) or not isinstance(params, dict):
            raise FileError("upload task has no usable form", code="NO_UPLOAD_FORM",
                            job_id=job_id, task=task, path=filename)
        data = {str(k): str(v) for k, v in params.items()}
        ctx: dict[str, Any] = {"job_id": job_id, "task": task, "path": filename}
        try:
            response = self._storage.post(url, data=data, files={"file": (filename, file)})
        except httpx.TimeoutException as exc:
            raise TransientError("upload timed out", code="TIMEOUT", **ctx) from exc
        except httpx.TransportError as exc:
            raise TransientError(f"network error during upload: {exc}", code="NETWORK",
                                 **ctx) from exc
        # S3 answers 201; legacy hosts 200/204 or a redirect to /v2/upload/redirect/…
        if response.status_code in (200, 201, 204) or response.is_redirect:
            return
        raise error_for(response, **ctx)

    @contextmanager
    def download(self, url: str, *, job_id: str, path: str) -> Iterator[Iterator[bytes]]:
        """Stream an export URL; 404/403 mean the output is gone (expired or deleted)."""
        ctx: dict[str, Any] = {"job_id": job_id, "path": path}
        try:
            with self._storage.stream("GET", url) as response:
                if response.status_code in (403, 404, 410):
                    raise OutputGone(f"output no longer available ({response.status_code})",
                                     code="OUTPUT_GONE", http_status=response.status_code, **ctx)
                if not response.is_success:
                    raise error_for(response, **ctx)
                yield _guarded(response.iter_bytes(_CHUNK), ctx)
        except httpx.TimeoutException as exc:
            raise TransientError("download timed out", code="TIMEOUT", **ctx) from exc
        except httpx.TransportError as exc:
            raise TransientError(f"network error during download: {exc}", code="NETWORK",
                                 **ctx) from exc


def _guarded(chunks: Iterator[bytes], ctx: dict[str, Any]) -> Iterator[bytes]:
    """Re-raise transport errors met while the body streams (httpx raises them lazily)."""
    try:
        yield from chunks
    except httpx.TransportError as exc:
        raise TransientError(f"download interrupted: {exc}", code="NETWORK", **ctx) from exc


def _data(body: dict[str, Any], what: str, **context: Any) -> dict[str, Any]:
    data = body.get("data")
    if not isinstance(data, dict) or "id" not in data:
        raise TransientError(f"malformed {what} response from the API", code="BAD_RESPONSE",
                             **context)
    return data
