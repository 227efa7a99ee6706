"""Jobs, tasks and their files, held in memory behind one lock; their API JSON shapes; rate limits."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ccwatch.clock import iso

TERMINAL = frozenset({"finished", "error"})
USER_ID = 37116784  # the id the API's recorded fixtures carry


@dataclass
class StoredFile:
    filename: str
    path: Path
    size: int
    md5: str | None = None
    url_serial: int = 0  # issue order of its download URL, for forced expiry
    expires_at: float = 0.0  # wall-clock expiry of its download URL


@dataclass
class Task:
    id: str
    name: str | None
    job_id: str | None
    operation: str
    payload: dict[str, Any]
    depends_on: list[str]
    created_at: float
    status: str = "waiting"
    message: str | None = None
    code: str | None = None
    credits: int | None = None
    engine: str | None = None
    engine_version: str | None = None
    result: dict[str, Any] | None = None
    started_at: float | None = None
    ended_at: float | None = None
    retry_of_task_id: str | None = None
    form_serial: int = 0  # issue order of its upload form, for forced expiry
    files: list[StoredFile] = field(default_factory=list)


@dataclass
class Job:
    id: str
    tag: str | None
    webhook_url: str | None
    created_at: float
    task_ids: list[str] = field(default_factory=list)
    status: str = "waiting"
    started_at: float | None = None
    ended_at: float | None = None
    latency_applied: bool = False


@dataclass
class Webhook:
    id: str
    url: str
    events: list[str]
    created_at: float
    disabled: bool = False
    failing: bool = False


class Upload(NamedTuple):
    task_id: str
    filename: str
    size: int
    md5: str


def new_id() -> str:
    return str(uuid.uuid4())


def _ts(value: float | None) -> str | None:
    return None if value is None else iso(value)


class Store:
    """All mutable state. Callers hold ``lock`` while reading or changing it; ``changed`` wakes sync waits."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.jobs: dict[str, Job] = {}
        self.tasks: dict[str, Task] = {}
        self.dependants: dict[str, list[str]] = {}
        self.webhooks: dict[str, Webhook] = {}
        self.uploads: list[Upload] = []
        self.closing = False
        # Each sync wait holds a server thread: past this many, a wait answers at once with the
        # current state (the server stays responsive; clients then poll). None: no limit.
        self.max_waits: int | None = None
        self.waits = 0
        # Sync waits by the job or task they wait on: an ending task wakes its own waiters, not
        # every blocked server thread (a herd of ~16 wake-ups per task at 16 jobs in flight).
        self._keyed: dict[str, tuple[threading.Condition, list[int]]] = {}

    def add_task(self, task: Task) -> None:
        self.tasks[task.id] = task
        for dep in task.depends_on:
            self.dependants.setdefault(dep, []).append(task.id)

    def remove_task(self, task_id: str) -> Task | None:
        task = self.tasks.pop(task_id, None)
        self.dependants.pop(task_id, None)
        return task

    def job_tasks(self, job: Job) -> list[Task]:
        return [self.tasks[t] for t in job.task_ids if t in self.tasks]

    def wait_until(self, done: Any, timeout_s: float, key: str | None = None) -> None:
        """Block (on a condition, no polling) until ``done()`` is true, the cap passes or we close
        (at once when ``max_waits`` waits are blocked already). With ``key`` (a job or task id)
        only :meth:`wake` of that key or :meth:`wake_all` wakes it."""
        with self.changed:
            if self.max_waits is not None and self.waits >= self.max_waits:
                return
            if key is None:
                cond, count = self.changed, [0]
            elif (keyed := self._keyed.get(key)) is not None:
                cond, count = keyed
            else:
                cond, count = self._keyed[key] = threading.Condition(self.lock), [0]
            self.waits += 1
            count[0] += 1
            try:
                cond.wait_for(lambda: self.closing or done(), timeout=timeout_s)
            finally:
                self.waits -= 1
                count[0] -= 1
                if key is not None and not count[0]:
                    del self._keyed[key]

    def wake(self, *keys: str | None) -> None:
        """Wake the waits on these jobs or tasks (the caller holds ``lock``)."""
        for key in keys:
            if key is not None and (keyed := self._keyed.get(key)) is not None:
                keyed[0].notify_all()

    def wake_all(self) -> None:
        with self.changed:
            self.changed.notify_all()
            for cond, _ in self._keyed.values():
                cond.notify_all()

    def release_waits(self) -> None:
        """End every sync wait now and refuse new ones (the server or the emulator stops)."""
        with self.changed:
            self.closing = True
        self.wake_all()


class Shapes:
    """Builds the API's JSON objects; ``base`` is the emulator's own base URL.

    Keys are the recorded ones: ``payload`` (and ``region``) only with ``include=payload``,
    ``engine`` only on processing operations, no ``webhook_url`` on jobs.
    """

    def __init__(self, store: Store, base: str, include: frozenset[str] = frozenset()) -> None:
        self.store = store
        self.base = base
        self.include = include

    def task(self, task: Task) -> dict[str, Any]:
        shape: dict[str, Any] = {"id": task.id}
        if task.name is not None:  # a task created alone has no name key (recorded)
            shape["name"] = task.name
        shape.update({
            "job_id": task.job_id,
            "status": task.status,
            "credits": task.credits,
            "code": task.code,
            "message": task.message,
            "percent": 100,
            "operation": task.operation,
        })
        if not task.operation.startswith(("import/", "export/")):
            shape["engine"], shape["engine_version"] = task.engine, task.engine_version
        if "payload" in self.include:
            shape["payload"] = task.payload
        shape.update({
            "result": task.result,
            "created_at": iso(task.created_at),
            "started_at": _ts(task.started_at),
            "ended_at": _ts(task.ended_at),
            "retry_of_task_id": task.retry_of_task_id,
            "copy_of_task_id": task.retry_of_task_id,
            "user_id": USER_ID,
            "priority": -10,
            "host_name": None,
            "storage": "emulator",
        })
        if "payload" in self.include:
            shape["region"] = "local"
        shape["depends_on_task_ids"] = list(task.depends_on)
        shape["links"] = {"self": f"{self.base}/v2/tasks/{task.id}"}
        return shape

    def job(self, job: Job, *, with_tasks: bool = True) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "id": job.id,
            "tag": job.tag,
            "status": job.status,
            "created_at": iso(job.created_at),
            "started_at": _ts(job.started_at),
            "ended_at": _ts(job.ended_at),
        }
        if with_tasks:
            shape["tasks"] = [self.task(t) for t in self.store.job_tasks(job)]
        shape["links"] = {"self": f"{self.base}/v2/jobs/{job.id}"}
        return shape

    def webhook(self, hook: Webhook, secret: str) -> dict[str, Any]:
        return {
            "id": hook.id,
            "url": hook.url,
            "events": hook.events,
            "disabled": hook.disabled,
            "failing": hook.failing,
            "signing_secret": secret,
            "created_at": iso(hook.created_at),
            "updated_at": iso(hook.created_at),
            "links": {"self": f"{self.base}/v2/webhooks/{hook.id}"},
        }


class RateWindow:
    """Requests per fixed window, as the ``X-RateLimit-*`` headers count them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._count = 0

    def take(self, limit: int, window_s: float) -> tuple[int, float]:
        """(remaining after this request, or -1 if over the limit; seconds until the window resets)."""
        with self._lock:
            now = time.monotonic()
            if now - self._start >= window_s:
                self._start, self._count = now, 0
            reset = window_s - (now - self._start)
            if self._count >= limit:
                return -1, reset
            self._count += 1
            return limit - self._count, reset
