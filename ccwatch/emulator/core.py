"""The emulator's state machine: jobs and tasks move waiting → processing → finished | error."""

from __future__ import annotations

import fnmatch
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ccwatch.clock import Clock, SystemClock
from ccwatch.emulator.engines import ConversionFailed, Engines
from ccwatch.emulator.faults import Faults, LoggedRequest, RequestLog
from ccwatch.emulator.forms import LIVE_FORM_TTL_S, SANDBOX_FORM_TTL_S, Signer
from ccwatch.emulator.runner import Runner
from ccwatch.emulator.store import TERMINAL, Job, RateWindow, Shapes, Store, StoredFile, Task, Upload, new_id
from ccwatch.emulator.validation import Invalid, check_conversion, check_task, validate_job
from ccwatch.emulator.webhooks import Delivery, WebhookSender
from ccwatch.emulator.work import Outcome, run_operation, safe_name


class Emulator:
    """A small CloudConvert API v2. Serve it with :func:`ccwatch.emulator.serve` (or use it as a
    WSGI app without a socket: :func:`ccwatch.emulator.wsgi_app`)."""

    def __init__(self, api_key: str = "test-key", webhook_secret: str = "test-secret",
                 latency_s: float = 0.0, storage: Path | str | None = None,
                 url_ttl_s: float = 86400.0, sync_wait_cap_s: float = 60.0, *,
                 rate_limit_per_minute: int = 500, rate_window_s: float = 60.0,
                 credits: int = 1000, workers: int = 4, max_concurrent_jobs: int = 0,
                 sandbox: bool = False, form_ttl_s: float | None = None,
                 webhook_retry_pause_s: float = 0.5, clock: Clock | None = None) -> None:
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.latency_s = latency_s
        self.url_ttl_s = url_ttl_s
        self.sync_wait_cap_s = sync_wait_cap_s
        self.rate_limit_per_minute = rate_limit_per_minute  # per route group and window
        self.rate_window_s = rate_window_s
        self.max_concurrent_jobs = max_concurrent_jobs  # 0 = no limit; else 402 past it
        self.form_ttl_s = form_ttl_s if form_ttl_s is not None else (
            SANDBOX_FORM_TTL_S if sandbox else LIVE_FORM_TTL_S)
        self.credits = credits
        self.clock: Clock = clock or SystemClock()
        self._own_storage = storage is None
        self.storage = Path(tempfile.mkdtemp(prefix="ccwatch-emulator-") if storage is None
                            else storage)
        self.storage.mkdir(parents=True, exist_ok=True)
        self.base_url: str | None = None
        self.storage_url: str | None = None  # the storage host (serve() gives it its own port)
        self.store = Store()
        self.faults = Faults()
        self.log = RequestLog()
        # Here, not in the app: they outlive one serve(). The recorded Remaining counts
        # creations (POSTs) apart from reads: one window per route group.
        self.rate_windows = {"create": RateWindow(), "other": RateWindow()}
        self.engines = Engines()
        # Signs upload forms and download URLs; the bucket names are the recorded ones.
        self.signer = Signer(secrets.token_bytes(16), "tasks-sandbox" if sandbox else "tasks")
        self.runner = Runner(self._execute, workers)
        self.webhooks = WebhookSender(webhook_secret, self.faults, self._disable_webhook,
                                      retry_pause_s=webhook_retry_pause_s)
        self._closed = False

    def __repr__(self) -> str:  # keys stay out of reprs and logs
        return (f"Emulator(base_url={self.base_url!r}, storage_url={self.storage_url!r}, "
                f"storage={str(self.storage)!r})")

    # --- the Python API tests use ---

    @property
    def requests(self) -> list[LoggedRequest]:
        return self.log.snapshot()

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.log.snapshot()
                   if r.method == method.upper() and fnmatch.fnmatchcase(r.path, path))

    def jobs(self) -> list[dict[str, Any]]:
        with self.store.lock:
            shapes = self.shapes()
            return [shapes.job(j) for j in self.store.jobs.values()]

    def status_counts(self) -> dict[str, int]:
        """Jobs per status: a cheap progress check for benchmarks and polls."""
        with self.store.lock:
            counts: dict[str, int] = {}
            for job in self.store.jobs.values():
                counts[job.status] = counts.get(job.status, 0) + 1
            return counts

    def most_jobs_unfinished(self) -> int:
        """The most jobs that were ever created and not yet ended at the same moment."""
        with self.store.lock:
            spans = [(j.created_at, j.ended_at) for j in self.store.jobs.values()]
        # +1 at each creation, -1 at each end; at equal times an end comes first (a freed slot)
        steps = sorted([(start, 1) for start, _ in spans]
                       + [(end, -1) for _, end in spans if end is not None])
        most = current = 0
        for _, step in steps:
            current += step
            most = max(most, current)
        return most

    def uploads(self) -> list[Upload]:
        with self.store.lock:
            return list(self.store.uploads)

    def webhook_deliveries(self) -> list[Delivery]:
        return self.webhooks.deliveries()

    def too_many_jobs(self) -> bool:
        """A new job would pass ``max_concurrent_jobs`` (jobs not yet finished or failed)."""
        if not self.max_concurrent_jobs:
            return False
        with self.store.lock:
            running = sum(1 for j in self.store.jobs.values() if j.status not in TERMINAL)
        return running >= self.max_concurrent_jobs

    def shapes(self, include: frozenset[str] = frozenset()) -> Shapes:
        return Shapes(self.store, self.base_url or "", include)

    @property
    def closed(self) -> bool:
        return self._closed

    def storage_folder(self, name: str) -> Path:
        """``storage/name``, created if missing; never the storage itself (parents are not
        created): work still running once :meth:`close` removed it must not bring it back."""
        folder = self.storage / name
        folder.mkdir(exist_ok=True)
        return folder

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.store.release_waits()
        self.runner.close()
        self.webhooks.close()
        if self._own_storage:
            shutil.rmtree(self.storage, ignore_errors=True)

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- creation ---

    def create_job(self, body: Any) -> dict[str, Any]:
        """``POST /v2/jobs``; raises validation.Invalid."""
        tasks = validate_job(body, self.engines)
        now = self.clock.wall()
        with self.store.lock:
            job = Job(id=new_id(), tag=body.get("tag"), webhook_url=body.get("webhook_url"),
                      created_at=now)
            ids = {name: new_id() for name in tasks}
            for name, payload in tasks.items():
                task = Task(id=ids[name], name=name, job_id=job.id, operation=payload["operation"],
                            payload=payload, depends_on=[ids[i] for i in payload.get("input", [])],
                            created_at=now)
                job.task_ids.append(task.id)
                self.store.add_task(task)
            self.store.jobs[job.id] = job
            for task in self.store.job_tasks(job):
                if not task.depends_on:
                    self.start_task(task, created=True)
            self._notify_hooks("job.created", job)
            return self.shapes().job(job)

    def create_task(self, operation: str, body: Any) -> dict[str, Any]:
        """``POST /v2/{operation}``: a task outside any job; ``input`` holds task ids."""
        errors: dict[str, list[str]] = {}
        payload = {**body, "operation": operation} if isinstance(body, dict) else None
        with self.store.lock:
            check_task(payload, "", set(self.store.tasks), errors)
            if errors or payload is None:
                raise Invalid(errors)
            if "input" in payload:
                payload["input"] = [payload["input"]] if isinstance(payload["input"], str) \
                    else list(payload["input"])
            deps = [self.store.tasks[i] for i in payload.get("input", [])]
            formats = [f.filename.rsplit(".", 1)[-1] for d in deps for f in d.files]
            check_conversion(payload, formats, self.engines)
            task = Task(id=new_id(), name=None, job_id=None, operation=operation, payload=payload,
                        depends_on=[d.id for d in deps], created_at=self.clock.wall())
            self.store.add_task(task)
            if any(d.status == "error" for d in deps):
                self.fail_task(task, "INPUT_TASK_FAILED", "Input task has failed")
            elif all(d.status == "finished" for d in deps):
                self.start_task(task, created=True)
            return self.shapes().task(task)

    # --- transitions (store lock held) ---

    def start_task(self, task: Task, *, created: bool = False) -> None:
        """A task whose inputs are all finished: uploads wait for their file, the rest run.

        Until a worker takes it, a task is ``waiting`` if it was just created (recorded), else
        ``queued`` (its inputs finished while it waited: the status the API's jobs also show).
        """
        if task.operation == "import/upload":
            task.message = "Waiting for file upload"
            task.form_serial = self.faults.issue_url_serial()
            task.result = {"form": self.signer.upload_form(
                self.storage_url or self.base_url or "", task.id, self.clock.wall(),
                self.form_ttl_s)}
            return
        delay = 0.0
        job = self.store.jobs.get(task.job_id) if task.job_id else None
        if not task.operation.startswith("import/") and (job is None or not job.latency_applied):
            if job is not None:
                job.latency_applied = True  # latency is per job, not per task
            delay = max(self.latency_s, self.faults.latency_for(self._input_names(task)))
        task.status = "waiting" if created else "queued"
        self._mark_job_processing(task)
        self.runner.submit(task.id, delay)

    def _mark_job_processing(self, task: Task) -> None:
        job = self.store.jobs.get(task.job_id) if task.job_id else None
        if job is not None and job.status == "waiting":
            job.status = "processing"
            job.started_at = self.clock.wall()

    def _input_names(self, task: Task) -> list[str]:
        return [f.filename for d in task.depends_on if d in self.store.tasks
                for f in self.store.tasks[d].files]

    def finish_task(self, task: Task, outcome: Outcome) -> None:
        task.status = "finished"
        task.ended_at = self.clock.wall()
        task.message = None
        task.files = outcome.files
        task.engine, task.engine_version = outcome.engine, outcome.engine_version
        task.credits = outcome.credits
        self.credits = max(0, self.credits - outcome.credits)
        task.result = {"files": [self._file_shape(task, i, f) for i, f in enumerate(task.files)]}
        for dep_id in self.store.dependants.get(task.id, []):
            dep = self.store.tasks.get(dep_id)
            if dep is not None and dep.status == "waiting" and all(
                    d in self.store.tasks and self.store.tasks[d].status == "finished"
                    for d in dep.depends_on):
                self.start_task(dep)
        self.store.wake(task.id)
        self.settle_job(task.job_id)

    def fail_task(self, task: Task, code: str, message: str) -> None:
        """The task and, transitively, every task waiting on it end in ``error``."""
        pending = [(task, code, message)]
        while pending:
            current, c, m = pending.pop()
            current.status, current.code, current.message = "error", c, m
            self.store.wake(current.id)
            current.ended_at = self.clock.wall()
            current.result = None
            for dep_id in self.store.dependants.get(current.id, []):
                dep = self.store.tasks.get(dep_id)
                if dep is not None and dep.status not in TERMINAL:
                    pending.append((dep, "INPUT_TASK_FAILED", "Input task has failed"))
        self.settle_job(task.job_id)

    def settle_job(self, job_id: str | None) -> None:
        job = self.store.jobs.get(job_id) if job_id else None
        if job is None:
            return
        tasks = self.store.job_tasks(job)
        if any(t.status not in TERMINAL for t in tasks):
            if job.status in TERMINAL:  # a retried task reopens its job
                job.status, job.ended_at = "processing", None
            return
        if job.status in TERMINAL:
            return
        job.status = "finished" if all(t.status == "finished" for t in tasks) else "error"
        self.store.wake(job.id)
        job.started_at = job.started_at or self.clock.wall()
        job.ended_at = self.clock.wall()
        event = "job.finished" if job.status == "finished" else "job.failed"
        if job.webhook_url:
            self.webhooks.send(job.webhook_url, event, self.shapes().job(job))
        self._notify_hooks(event, job)

    def _notify_hooks(self, event: str, job: Job) -> None:
        hooks = [h for h in self.store.webhooks.values() if not h.disabled and event in h.events]
        if hooks:  # the shape is only built when someone listens
            shape = self.shapes().job(job)
            for hook in hooks:
                self.webhooks.send(hook.url, event, shape, hook.id)

    def _disable_webhook(self, hook_id: str) -> None:
        with self.store.lock:
            hook = self.store.webhooks.get(hook_id)
            if hook is not None:
                hook.disabled = True

    # --- running (pool threads) ---

    def _execute(self, task_id: str) -> None:
        with self.store.lock:
            task = self.store.tasks.get(task_id)
            if task is None or task.status not in ("waiting", "queued"):
                return  # deleted or cancelled while it waited
            task.status, task.started_at = "processing", self.clock.wall()
            inputs = [(f.filename, f.path) for d in task.depends_on if d in self.store.tasks
                      for f in self.store.tasks[d].files]
            operation, payload = task.operation, dict(task.payload)
            fault = None if operation.startswith("import/") else \
                self.faults.take_for_names("task_error", [n for n, _ in inputs])
        out_dir = self.storage / task_id
        try:
            if fault is not None:
                raise ConversionFailed(fault.message, fault.code)
            if operation == "export/url":
                outcome = self._export(payload, inputs, out_dir)
            else:
                outcome = run_operation(operation, payload, inputs, out_dir, self.engines,
                                        self.resolve_download_url)
        except ConversionFailed as exc:
            code, message = exc.code, exc.message
        except Exception as exc:  # an engine bug fails the task, never the emulator
            code, message = "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"
        else:
            code = message = ""
        message = self._scrub(message)
        with self.store.lock:
            task = self.store.tasks.get(task_id)
            if task is None or task.status != "processing":
                shutil.rmtree(out_dir, ignore_errors=True)
            elif code:
                self.fail_task(task, code, message)
            else:
                self.finish_task(task, outcome)

    def _export(self, payload: dict[str, Any], inputs: list[tuple[str, Path]],
                out_dir: Path) -> Outcome:
        if payload.get("archive_multiple_files") and len(inputs) > 1:
            from ccwatch.emulator.engines import archive

            out_dir.mkdir(exist_ok=True)  # no parents: as storage_folder, never the storage
            archive(inputs, out_dir / "archive.zip", "zip")
            inputs = [("archive.zip", out_dir / "archive.zip")]
        expires = self.clock.wall() + self.url_ttl_s
        files = []
        for name, path in inputs:  # exports point at their input's file: no copy
            files.append(StoredFile(filename=name, path=path, size=path.stat().st_size,
                                    url_serial=self.faults.issue_url_serial(), expires_at=expires))
        return Outcome(files)

    # --- storage paths, upload forms and download URLs ---

    def _scrub(self, message: str) -> str:
        """Error text without the emulator's own storage paths (the real API shows none)."""
        pattern = re.escape(str(self.storage)) + r"[^\s'\"]*"
        return re.sub(pattern, lambda m: Path(m.group()).name, message)

    def _file_shape(self, task: Task, index: int, f: StoredFile) -> dict[str, Any]:
        if task.operation == "export/url":
            url = self.signer.download_url(self.storage_url or self.base_url or "", task.id,
                                           f.filename, int(f.expires_at))
            return {"filename": f.filename, "size": f.size, "url": url}
        if task.operation.startswith("import/"):  # as recorded: no size on imports
            return {"filename": f.filename, "md5": f.md5}
        return {"filename": f.filename, "size": f.size}

    def find_download(self, task_id: str, filename: str, expires: str, signature: str
                      ) -> tuple[str, StoredFile | None, bool]:
        """(status, file, inline): status is "ok", "missing" or "expired"."""
        with self.store.lock:
            task = self.store.tasks.get(task_id)
            if task is None or task.operation != "export/url":
                return "missing", None, False
            f = next((f for f in task.files if f.filename == filename), None)
            if f is None:
                return "missing", None, False
            inline = bool(task.payload.get("inline"))
        if not self.signer.download_ok(task_id, filename, expires, signature):
            return "expired", None, False
        if self.faults.url_expired(f.url_serial) or self.clock.wall() > f.expires_at:
            return "expired", None, False
        if not f.path.exists():
            return "missing", None, False
        return "ok", f, inline

    def resolve_download_url(self, url: str) -> tuple[str, Path] | None:
        """An export URL of this emulator → (file name, path), for import/url."""
        parts = urlsplit(url)
        base = urlsplit(self.storage_url or self.base_url or "")
        segments = parts.path.split("/")
        if parts.netloc != base.netloc or len(segments) != 4 or segments[1] != self.signer.bucket:
            return None
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        name = unquote(segments[3])
        status, f, _ = self.find_download(segments[2], name, query.get("Expires", ""),
                                          unquote(query.get("Signature", "")))
        return (safe_name(name), f.path) if status == "ok" and f else None
