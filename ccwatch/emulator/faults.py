"""Scripted faults (set from tests or the JSON control endpoint) and the request log."""

from __future__ import annotations

import collections
import fnmatch
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple


class LoggedRequest(NamedTuple):
    method: str
    path: str
    query: str
    status: int  # 0 = connection dropped without a response
    at: float


class RequestLog:
    def __init__(self, limit: int = 200_000) -> None:
        self._lock = threading.Lock()
        self._entries: collections.deque[LoggedRequest] = collections.deque(maxlen=limit)

    def add(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def snapshot(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass
class Fault:
    kind: str
    method: str | None = None
    path: str = "*"
    times: int | None = None  # None = until cleared
    status: int = 500
    after_work: bool = False
    retry_after_s: float = 1.0
    seconds: float = 0.0
    glob: str = "*"
    code: str = ""
    message: str = ""
    body: str | None = None
    retry_after: str | None = None  # a Retry-After header sent verbatim (seconds or an HTTP date)
    size: int = 0
    used: int = field(default=0)

    def matches_route(self, method: str, path: str) -> bool:
        method_ok = self.method is None or self.method.upper() == method.upper()
        return method_ok and fnmatch.fnmatchcase(path, self.path)


class Faults:
    """Each ``times`` counts matching uses; a used-up fault stops applying (and stays listed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._url_serial = 0  # counts download URLs issued
        self._url_expired_upto = 0  # URLs with a serial up to this one are expired
        self._forms_expired_upto = 0  # likewise for upload forms (their tasks' serials)

    def _add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def http_error(self, method: str | None, path: str, status: int = 500, times: int | None = 1,
                   after_work: bool = False, body: str | None = None,
                   retry_after: str | None = None) -> Fault:
        """Answer ``status`` on matching routes (API or storage host); ``after_work`` does the real
        work first; ``retry_after`` adds that ``Retry-After`` header."""
        return self._add(Fault("http_error", method=method, path=path, status=status, times=times,
                               after_work=after_work, body=body, retry_after=retry_after))

    def redirect(self, method: str | None, path: str, times: int | None = 1) -> Fault:
        """302 to the same URL (one more hop each time; ``times=None`` loops for ever)."""
        return self._add(Fault("redirect", method=method, path=path, times=times))

    def trickle(self, method: str | None, path: str, seconds: float, times: int | None = 1) -> Fault:
        """Send the answer's body one byte every ``seconds`` (a stalling server or proxy)."""
        return self._add(Fault("trickle", method=method, path=path, seconds=seconds, times=times))

    def oversize_body(self, method: str | None, path: str, size: int = 1 << 30,
                      times: int | None = 1) -> Fault:
        """A 200 JSON answer of ``size`` bytes, generated as it is sent (never held in memory)."""
        return self._add(Fault("oversize_body", method=method, path=path, size=size, times=times))

    def rate_limit(self, times: int | None = 1, retry_after_s: float = 1.0,
                   method: str | None = None, path: str = "*") -> Fault:
        return self._add(Fault("rate_limit", method=method, path=path, times=times,
                               retry_after_s=retry_after_s))

    def credits_exceeded(self, times: int | None = None) -> Fault:
        """402 on job and task creation."""
        return self._add(Fault("credits_exceeded", times=times))

    def unauthorized(self, times: int | None = None) -> Fault:
        """401 on every authenticated route (not on upload forms and downloads)."""
        return self._add(Fault("unauthorized", times=times))

    def latency(self, seconds: float, glob: str = "*") -> Fault:
        """Processing time added to each job with an input file name matching ``glob``."""
        return self._add(Fault("latency", seconds=seconds, glob=glob))

    def drop_connection(self, method: str | None, path: str, times: int | None = 1) -> Fault:
        return self._add(Fault("drop_connection", method=method, path=path, times=times))

    def delay(self, method: str | None, path: str, seconds: float, times: int | None = 1,
              after_work: bool = False) -> Fault:
        """Hold matching requests ``seconds`` before answering (``after_work``: after doing the work)."""
        return self._add(Fault("delay", method=method, path=path, seconds=seconds, times=times,
                               after_work=after_work))

    def truncate_downloads(self, times: int | None = 1) -> Fault:
        return self._add(Fault("truncate_download", path="/tasks*/*", times=times))

    def task_error(self, glob: str, code: str = "CONVERSION_FAILED",
                   message: str = "Conversion failed", times: int | None = None) -> Fault:
        return self._add(Fault("task_error", glob=glob, code=code, message=message, times=times))

    def expire_urls(self) -> None:
        """Every download URL issued so far answers 403 from now on."""
        with self._lock:
            self._url_expired_upto = self._url_serial

    def expire_forms(self) -> None:
        """Every upload form issued so far is refused with S3's 403 from now on."""
        with self._lock:
            self._forms_expired_upto = self._url_serial

    def renew_forms(self, times: int | None = None) -> Fault:
        """Reading an upload task whose form expired re-signs it (manage.renew_form_if_expired)."""
        return self._add(Fault("renew_forms", times=times))

    def form_expired(self, serial: int) -> bool:
        with self._lock:
            return serial <= self._forms_expired_upto

    def issue_url_serial(self) -> int:
        with self._lock:
            self._url_serial += 1
            return self._url_serial

    def url_expired(self, serial: int) -> bool:
        with self._lock:
            return serial <= self._url_expired_upto

    def drop_webhooks(self, times: int | None = 1) -> Fault:
        return self._add(Fault("drop_webhook", times=times))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._url_expired_upto = self._forms_expired_upto = 0

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def add_from_json(self, spec: dict[str, Any]) -> Fault | None:
        """The control endpoint's ``{"kind": ..., ...}``; raises ValueError/TypeError on a bad spec."""
        spec = dict(spec)
        kind = spec.pop("kind", None)
        adders: dict[str, Callable[..., Fault]] = {
            "http_error": self.http_error, "rate_limit": self.rate_limit,
            "credits_exceeded": self.credits_exceeded, "unauthorized": self.unauthorized,
            "latency": self.latency, "drop_connection": self.drop_connection, "delay": self.delay,
            "truncate_downloads": self.truncate_downloads, "task_error": self.task_error,
            "drop_webhooks": self.drop_webhooks, "redirect": self.redirect,
            "trickle": self.trickle, "oversize_body": self.oversize_body,
            "renew_forms": self.renew_forms,
        }
        if kind in ("expire_urls", "expire_forms"):
            (self.expire_urls if kind == "expire_urls" else self.expire_forms)()
            return None
        if kind not in adders:
            raise ValueError(f"unknown fault kind {kind!r}")
        return adders[kind](**spec)

    # --- consumption (the emulator's side) ---

    def take(self, kind: str, method: str = "", path: str = "", *,
             after_work: bool | None = None) -> Fault | None:
        """The first live fault of ``kind`` matching the route, counting one use."""
        with self._lock:
            for fault in self._faults:
                if fault.kind != kind or (fault.times is not None and fault.used >= fault.times):
                    continue
                if after_work is not None and fault.after_work != after_work:
                    continue
                if path and not fault.matches_route(method, path):
                    continue
                fault.used += 1
                return fault
        return None

    def take_for_names(self, kind: str, names: list[str]) -> Fault | None:
        """The first live fault of ``kind`` whose glob matches one of the input file names."""
        with self._lock:
            for fault in self._faults:
                if fault.kind != kind or (fault.times is not None and fault.used >= fault.times):
                    continue
                if any(fnmatch.fnmatch(n, fault.glob) for n in names or [""]):
                    fault.used += 1
                    return fault
        return None

    def latency_for(self, names: list[str]) -> float:
        with self._lock:
            return max((f.seconds for f in self._faults if f.kind == "latency"
                        and any(fnmatch.fnmatch(n, f.glob) for n in names or [""])), default=0.0)
