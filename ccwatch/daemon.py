"""The daemon's lifecycle: open the ledger and the API, watch, crank the pipeline, drain on stop.

Effects live here: threads (the waker's repeats, watchdog), signals (SIGTERM drains, SIGHUP reloads), the
embedded engine; what systemd is told comes from :mod:`ccwatch.process`.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from loguru import logger

from ccwatch import logs, watch
from ccwatch.client.api import CloudConvertClient, tls_context
from ccwatch.client.syncwait import JobWaiter
from ccwatch.clock import Clock, SystemClock
from ccwatch.config import Config, FolderConfig
from ccwatch.config import load as load_config
from ccwatch.config.reload import reloadable
from ccwatch.errors import (
    AccountError,
    ConfigError,
    ExitCode,
    LedgerUnavailable,
)
from ccwatch.http.metrics import Metrics
from ccwatch.ledger import Ledger
from ccwatch.pipeline import Pipeline, credits
from ccwatch.pipeline.neighbours import Neighbours
from ccwatch.pipeline.pacing import CreatePacer
from ccwatch.pipeline.waker import Every, Waker
from ccwatch.process import Alert, install_signal_handlers, sd_notify, single_instance, watchdog_interval_s
from ccwatch.stages.cleanup import JobCleanup
from ccwatch.stages.context import Context, follow_renamed_folders
from ccwatch.stages.hooks import Hooks

# How often the main loop looks at the watchers and the pipeline's health (and tells systemd's
# watchdog, at least this often); stops and reloads wake it at once.
BEAT_S = 5.0
# A pipeline that has not turned for this long is hung: stop telling systemd we are alive.
STALL_S = 60.0
EMBEDDED_KEY = "embedded-engine"
# run --once looks whether all is done at each finished file, and at least this often (settling
# files finish nothing: their end is seen here).
IDLE_CHECK_S = 0.5


@contextmanager
def api_base(config: Config) -> Iterator[tuple[str, str, str | None]]:
    """(base URL, sync base URL, API key); starts the in-process engine for ``embedded``."""
    cc = config.cloudconvert
    if cc.endpoint != "embedded":
        key = cc.api_key.reveal() if cc.api_key else None
        if not key:
            # An account problem, not a config one: exit 3, as `ccwatch check` says it.
            raise AccountError(f"cloudconvert.api_key_env: no API key: set ${cc.api_key_env}, "
                               "cloudconvert.api_key_file, or the systemd credential "
                               "cloudconvert-api-key; then `ccwatch check`", code="NO_API_KEY")
        yield cc.base_url(), cc.sync_base_url(), key
        return
    from ccwatch.emulator import Emulator, serve

    # With [webhook] the engine signs deliveries with the configured secret, as CloudConvert would.
    hook_secret = config.webhook.secret if config.webhook else None
    # Closed on the way out: its storage (copies of the files it converted) leaves the temp dir.
    with (Emulator(api_key=EMBEDDED_KEY, webhook_secret=hook_secret.reveal() if hook_secret else "")
          as engine, serve(engine, host="127.0.0.1", port=0) as base_url):
        logger.info("embedded engine serving on {} (no account, no network)", base_url)
        yield base_url, base_url + "/sync", EMBEDDED_KEY


@dataclass
class Runtime:
    ctx: Context
    pipeline: Pipeline
    neighbours: Neighbours
    # folder → the watch mode in use and why, for the status page (set once watching)
    watch_modes: dict[str, str] = field(default_factory=dict)

    def scan(self, folder: FolderConfig) -> int:
        """Note the folder's new files, and look for another installation watching it."""
        self.neighbours.beat(folder)
        return self.pipeline.scan(folder)


@contextmanager
def open_runtime(config: Config, *, clock: Clock | None = None) -> Iterator[Runtime]:
    """Ledger + API client + pipeline (+ webhook receiver), closed in reverse order."""
    clock = clock or SystemClock()
    webhook_url = config.webhook.public_url if config.webhook else None
    with ExitStack() as stack:
        state_dir = config.daemon.resolved_state_dir()
        stack.enter_context(single_instance(state_dir))
        base, sync_base, key = stack.enter_context(api_base(config))
        logs.redact(key if config.cloudconvert.endpoint != "embedded" else None)
        ledger = _open_ledger(config, state_dir, clock)
        stack.callback(ledger.close)
        if ledger.shared:
            logger.info("shared ledger {} as host {} (lease {:g} s)", ledger.describe(), ledger.host,
                        config.ledger.lease_s)
        pacer = CreatePacer()  # job creation at the account's rate limit, learnt from its answers
        follow_renamed_folders(config, ledger)
        api = CloudConvertClient(base, sync_base, key, timeout_s=config.cloudconvert.timeout_s,
                                 clock=clock, pacing=pacer)
        stack.callback(api.close)
        metrics = Metrics()
        hide = [config.cloudconvert.api_key_env, "CREDENTIALS_DIRECTORY"]
        if config.webhook is not None:
            hide.append(config.webhook.secret_env)
        hooks = Hooks(timeout_s=config.daemon.hook_timeout_s, on_failure=metrics.hook_failures.inc,
                      hide=hide)
        stack.callback(hooks.close, config.daemon.hook_timeout_s)
        cleanup = (JobCleanup(ledger, api, clock, retry_s=config.daemon.poll_max_s,
                              on_deleted=metrics.jobs_deleted.inc,
                              timer=functools.partial(Waker, clock))
                   if config.daemon.delete_jobs else None)
        if cleanup is not None:
            stack.callback(cleanup.stop)
        ctx = Context(config=config, ledger=ledger, api=api, clock=clock, webhook_url=webhook_url,
                      metrics=metrics, hooks=hooks, cleanup=cleanup)
        ctx.check_roots()
        ctx.record_availability()  # not what a previous run left
        waiter = None
        if config.webhook is None and config.daemon.tracking == "wait":
            waiter = functools.partial(JobWaiter, sync_base, key, tls=tls_context)
        pipeline = Pipeline(ctx, waiter=waiter, pacer=pacer)
        stack.callback(pipeline.close, wait=False)
        neighbours = Neighbours(config, ledger, clock, state_dir=state_dir, roots=ctx.roots)
        stack.callback(neighbours.leave)
        runtime = Runtime(ctx, pipeline, neighbours)
        if config.webhook is not None:
            stack.enter_context(_receiver(config, pipeline))
        if config.http.listen:
            stack.enter_context(_status_endpoint(runtime))
        yield runtime


def _open_ledger(config: Config, state_dir: Path, clock: Clock) -> Ledger:
    """A shared ledger's database may be down at boot or restarting: wait for it, as for a
    connection lost later (``ccwatch check`` says what is wrong with a URL that never works)."""
    delay = 1.0
    while True:
        try:
            return config.ledger.open(state_dir, folders=[f.name for f in config.folders])
        except ConfigError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, LedgerUnavailable) and cause.code == "LEDGER_UNAVAILABLE"):
                raise
            logger.error("{}; trying again in {:.0f} s", exc.message, delay)
        clock.sleep(delay)
        delay = min(delay * 2, 60.0)


@contextmanager
def _status_endpoint(runtime: Runtime) -> Iterator[str]:
    """``[http] listen``: the status page, /metrics and /healthz of this runtime."""
    from ccwatch.http import app as http  # werkzeug and waitress only when configured
    from ccwatch.pipeline import report
    listen = runtime.ctx.config.http.listen
    address = runtime.ctx.config.http.host_port()
    assert address is not None
    app = report.status_app(runtime.pipeline, watch_modes=runtime.watch_modes, stall_s=STALL_S)
    with ExitStack() as stack:
        try:
            url = stack.enter_context(http.serve(app, *address))
        except OSError as exc:
            raise ConfigError("http.listen",
                              f"cannot listen on {listen}: {exc.strerror or exc}") from exc
        yield url


@contextmanager
def _receiver(config: Config, pipeline: Pipeline) -> Iterator[str]:
    from ccwatch import webhook  # werkzeug and waitress only when configured
    assert config.webhook is not None
    hook = config.webhook
    secret = hook.secret.reveal() if hook.secret else ""
    if not secret:
        raise ConfigError("webhook.secret_env", f"no webhook secret: set ${hook.secret_env} or the "
                          "systemd credential cloudconvert-webhook-secret")
    logs.redact(secret)
    host, port = hook.host_port()
    ledger, clock = pipeline.ctx.ledger, pipeline.ctx.clock
    since = clock.wall()
    ledger.set_meta(webhook.BAD_SIGNATURES, None)  # counted per run: a fixed secret starts clean

    def bad_signature(count: int) -> None:
        ledger.set_meta(webhook.BAD_SIGNATURES,
                        {"count": count, "since": since, "last_at": clock.wall()})

    receiver = webhook.Receiver(path=hook.path(), secret=secret, on_job=pipeline.job_pushed,
                                on_bad_signature=bad_signature,
                                on_refuse=pipeline.ctx.metrics.webhook_refusals.inc)
    with ExitStack() as stack:
        try:
            url = stack.enter_context(webhook.serve(receiver, host, port))
        except OSError as exc:
            raise ConfigError("webhook.listen",
                              f"cannot listen on {hook.listen}: {exc.strerror or exc}") from exc
        yield url


class Daemon:
    """``ccwatch run``: watch until told to stop, then drain within ``shutdown_grace_s``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # Setting either wakes the main loop at once: it sleeps on ``_attention``, not on a tick.
        self._attention = threading.Event()
        self.stop_event = Alert(self._attention)
        self.reload_event = Alert(self._attention)  # SIGHUP: re-read the config file
        self._watchers: dict[str, watch.FolderWatcher] = {}

    def watchers(self) -> tuple[watch.FolderWatcher, ...]:
        """The running folder watchers, one per folder (empty before ``run`` starts them)."""
        return tuple(self._watchers.values())

    def _start_watcher(self, folder: FolderConfig) -> None:
        mode, reason = watch.choose_mode(folder.input, folder.watch)
        self.runtime.watch_modes[folder.name] = f"{mode} ({reason})"
        logger.bind(folder=folder.name).info("watching {} with {} ({})", folder.input, mode, reason)
        self._watchers[folder.name] = self._watcher(folder, mode)

    def _watcher(self, folder: FolderConfig, mode: str) -> watch.FolderWatcher:
        watcher = watch.FolderWatcher(
            folder.input, mode=mode, recursive=folder.recursive, poll_s=folder.poll_s,
            on_path=functools.partial(self.runtime.pipeline.note, folder.name))
        watcher.start()
        return watcher

    def _healthy(self) -> bool:
        """Restart a dead watcher (its thread can die with the filesystem under it); True while
        the pipeline keeps turning, so systemd's watchdog restarts a daemon that has hung."""
        for name, watcher in list(self._watchers.items()):
            if not watcher.alive():
                folder = self.runtime.ctx.folder(name)
                logger.bind(folder=name).error("the watcher stopped; starting it again")
                with contextlib.suppress(Exception):
                    watcher.stop()
                try:
                    self._watchers[name] = self._watcher(folder, watcher.mode)
                except OSError as exc:  # the rescan still covers the folder meanwhile
                    logger.bind(folder=name).error("cannot watch again yet: {}", exc)
                self.runtime.scan(folder)  # what happened while nobody watched
        # The waker turns the crank only when something is due: ask for a turn, so a hung one shows.
        self.runtime.pipeline.nudge()
        return self.runtime.pipeline.seconds_since_step() < STALL_S

    def _schedule_rescan(self, scheduler: Every, folder: FolderConfig) -> None:
        scheduler.add(f"rescan-{folder.name}", folder.rescan_s,
                      functools.partial(self.runtime.scan, folder))

    def reload(self, scheduler: Every) -> bool:
        """Re-read the config file: new folders and rules apply to new files, files in flight keep
        their settings; a config that does not load is refused and the running one stays."""
        ctx = self.runtime.ctx
        sd_notify("RELOADING=1")
        try:
            if ctx.config.source is None:
                raise ConfigError("config", "not started from a file: nothing to re-read")
            new = load_config(ctx.config.source)
        except ConfigError as err:
            logger.error("reload refused, still running the previous configuration: {} "
                         "(fix the file, then reload again)", err)
            sd_notify("READY=1")
            return False
        merged, restart = reloadable(ctx.config, new)
        if restart:
            logger.warning("reload: changes to [{}] take effect at the next restart",
                           "], [".join(restart))
        before = {f.name: f for f in ctx.config.folders}
        self.runtime.pipeline.reload(merged)
        for name, folder in before.items():  # stop what is gone or watched differently now
            now = next((f for f in merged.folders if f.name == name), None)
            if now is None or _watched(now) != _watched(folder):
                with contextlib.suppress(Exception):
                    self._watchers.pop(name).stop()
                self.runtime.watch_modes.pop(name, None)
                scheduler.remove(f"rescan-{name}")
        for folder in merged.folders:
            if folder.name not in self._watchers:
                self._start_watcher(folder)
            self._schedule_rescan(scheduler, folder)
            self.runtime.scan(folder)  # files a new rule or folder now takes
        logger.info("configuration reloaded from {} ({} folder(s))", merged.source,
                    len(merged.folders))
        sd_notify("READY=1\nSTATUS=" + self.status_line())
        return True

    def status_line(self) -> str:
        p = self.runtime.pipeline
        pause = p.gate.why_paused()
        paused = f", PAUSED: {pause[0]}" if pause else ""
        return (f"{p.active_count()} in progress, {p.delivered} done, {p.failed} failed"
                f"{paused}")

    def install_signal_handlers(self) -> None:
        install_signal_handlers(self.stop_event, reload=self.reload_event)

    def run(self) -> bool:
        """Run until ``stop_event``; True when the drain finished within the grace period."""
        pipeline = self.runtime.pipeline
        clock = self.runtime.ctx.clock
        scheduler = Every(clock)
        try:
            for folder in self.runtime.ctx.config.folders:
                self._start_watcher(folder)
            for folder in self.runtime.ctx.config.folders:
                found = self.runtime.scan(folder)
                logger.bind(folder=folder.name).info("startup scan: {} new file(s)", found)
                self._schedule_rescan(scheduler, folder)
            guard = credits.guard(self.runtime.ctx, self.runtime.pipeline.gate)
            if guard is not None:
                scheduler.add("credits", self.runtime.ctx.config.daemon.credits_check_s,
                              guard.check, now=True)
            sd_notify("READY=1\nSTATUS=" + self.status_line())
            keepalive = watchdog_interval_s()
            beat_s = min(keepalive, BEAT_S) if keepalive else BEAT_S
            beat = clock.monotonic() + beat_s
            while not self.stop_event.is_set():
                self._attention.wait(max(0.0, beat - clock.monotonic()))
                self._attention.clear()  # the events themselves stay set: nothing is missed
                if self.stop_event.is_set():
                    break
                if self.reload_event.is_set():
                    self.reload_event.clear()
                    self.reload(scheduler)
                if clock.monotonic() < beat:
                    continue
                beat = clock.monotonic() + beat_s
                if self._healthy():
                    sd_notify("WATCHDOG=1\nSTATUS=" + self.status_line())
                else:
                    logger.error("the pipeline has not turned for {:.0f} s; withholding the "
                                 "watchdog keep-alive", self.runtime.pipeline.seconds_since_step())
        finally:
            sd_notify("STOPPING=1")
            pipeline.stop_intake()
            for watcher in self._watchers.values():
                with contextlib.suppress(Exception):
                    watcher.stop()
        drained = self._drain(self.runtime.ctx.config.daemon.shutdown_grace_s)
        scheduler.stop()
        return drained

    def _drain(self, grace_s: float) -> bool:
        return self.runtime.pipeline.drain(
            grace_s, tick=lambda: sd_notify("WATCHDOG=1\nSTATUS=draining: " + self.status_line()))


def run_once(runtime: Runtime, *, on_progress: Callable[[int, int], None] | None = None,
             stop: threading.Event | None = None) -> ExitCode:
    """Settle and convert what is in the folders now, then return (``ccwatch run --once``).

    ``stop`` set (Ctrl-C): intake stops, running transfers drain within ``shutdown_grace_s``,
    and the result is ``INTERRUPTED``; the rest resumes from the ledger on the next run."""
    pipeline = runtime.pipeline
    total = pipeline.active_count()
    guard = credits.guard(runtime.ctx, runtime.pipeline.gate)
    if guard is not None:
        guard.check()
    for folder in runtime.ctx.config.folders:
        total += runtime.scan(folder)
    pipeline.nudge()
    while True:
        if stop is not None and stop.is_set():
            pipeline.stop_intake()
            pipeline.drain(runtime.ctx.config.daemon.shutdown_grace_s)
            return ExitCode.INTERRUPTED
        if on_progress:
            on_progress(pipeline.delivered + pipeline.failed, total)
        if (paused := pipeline.gate.why_paused()) is not None:
            logger.error("stopping: {}", paused[0])
            return ExitCode.ACCOUNT
        if pipeline.idle():
            break
        # The waker turns the crank; this thread only waits for files to finish.
        pipeline.wait_progress(IDLE_CHECK_S)
    if runtime.ctx.cleanup is not None:
        runtime.ctx.cleanup.stop()
        runtime.ctx.cleanup.sweep(final=True)  # one try now; what fails is deleted by the next run
    return ExitCode.FILES_FAILED if pipeline.failed else ExitCode.OK


def _watched(folder: FolderConfig) -> tuple[object, ...]:
    """What a folder's watcher depends on: a change restarts it on reload."""
    return (folder.input, folder.recursive, folder.watch, folder.poll_s)
