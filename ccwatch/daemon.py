"""The daemon's lifecycle: open the ledger and the API, watch, crank the pipeline, drain on stop.

Effects live here: threads (APScheduler, watchdog), signals, the embedded engine, sd_notify.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler
from loguru import logger

from ccwatch import logs, watch, webhook
from ccwatch.api import CloudConvertClient
from ccwatch.clock import Clock, SystemClock
from ccwatch.config import Config, FolderConfig
from ccwatch.errors import ConfigError, ExitCode, FolderUnavailable, LedgerUnavailable
from ccwatch.fs import rooted
from ccwatch.ledger import Ledger
from ccwatch.pipeline import Pipeline
from ccwatch.pipeline.neighbours import Neighbours
from ccwatch.stages.context import Context, follow_renamed_folders

STEP_S = 0.1
# A pipeline that has not turned for this long is hung: stop telling systemd we are alive.
STALL_S = 60.0
EMBEDDED_KEY = "embedded-engine"


def sd_notify(message: str) -> bool:
    """Send a systemd notification when ``NOTIFY_SOCKET`` is set; silently nothing otherwise."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    family = getattr(socket, "AF_UNIX", None)
    if family is None:  # Windows builds of Python have no AF_UNIX; and no systemd to notify
        _warn_no_af_unix()
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
    except OSError as exc:
        logger.warning("sd_notify failed: {}", exc)
        return False
    return True


@functools.cache
def _warn_no_af_unix() -> None:
    logger.warning("NOTIFY_SOCKET is set, but sd_notify needs AF_UNIX sockets: not on this platform")


def watchdog_interval_s() -> float | None:
    """Half of systemd's WatchdogSec, when the unit asks for keep-alives."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit():
        return None
    return int(usec) / 2_000_000


@contextmanager
def api_base(config: Config) -> Iterator[tuple[str, str, str | None]]:
    """(base URL, sync base URL, API key); starts the in-process engine for ``embedded``."""
    cc = config.cloudconvert
    if cc.endpoint != "embedded":
        key = cc.api_key.reveal() if cc.api_key else None
        if not key:
            raise ConfigError("cloudconvert.api_key_env",
                              f"no API key: set ${cc.api_key_env}, cloudconvert.api_key_file, or the "
                              "systemd credential cloudconvert-api-key")
        yield cc.base_url(), cc.sync_base_url(), key
        return
    from ccwatch.emulator import Emulator, serve

    # With [webhook] the engine signs deliveries with the configured secret, as CloudConvert would.
    hook_secret = config.webhook.secret if config.webhook else None
    engine = Emulator(api_key=EMBEDDED_KEY, webhook_secret=hook_secret.reveal() if hook_secret else "")
    with serve(engine, host="127.0.0.1", port=0) as base_url:
        logger.info("embedded engine serving on {} (no account, no network)", base_url)
        yield base_url, base_url + "/sync", EMBEDDED_KEY


LOCK_NAME = "ccwatch.lock"


@contextmanager
def single_instance(state_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the state dir for the daemon's life: one daemon per ledger.

    The kernel drops the lock when the process dies, even by ``kill -9``, so a stale file never
    blocks a restart; the pid inside is only there to name the holder.
    """
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError("daemon.state_dir",
                          f"cannot create the lock file in {state_dir}: {exc.strerror}") from exc
    try:
        if not _try_lock(fd):
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            raise ConfigError("daemon.state_dir",
                              f"already running (pid {holder}) with the state dir {state_dir}; "
                              "stop it first (`ccwatch status` works beside it)")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        import fcntl
    except ImportError:  # no POSIX locks here (tests/system/test_portable_core.py blocks them)
        logger.warning("this platform has no file locks: one daemon per state dir is not enforced")
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@dataclass
class Runtime:
    ctx: Context
    pipeline: Pipeline
    neighbours: Neighbours

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
        follow_renamed_folders(config, ledger)
        api = CloudConvertClient(base, sync_base, key, timeout_s=config.cloudconvert.timeout_s,
                                 clock=clock)
        stack.callback(api.close)
        ctx = Context(config=config, ledger=ledger, api=api, clock=clock, webhook_url=webhook_url)
        for folder in config.folders:
            for place in (folder.output, folder.quarantine):
                with contextlib.suppress(FolderUnavailable):
                    removed = rooted.remove_temps(ctx.root(place))
                    if removed:
                        logger.bind(folder=folder.name).info(
                            "removed {} unfinished temp file(s) from {}", removed, place)
        for folder in config.folders:
            # Each root's device is recorded now: a different one later means it was unmounted.
            for root in (folder.input, folder.output, folder.quarantine, folder.archive):
                if root is not None:
                    with contextlib.suppress(FolderUnavailable):
                        ctx.root(root).check()
        ctx.record_availability()  # not what a previous run left
        pipeline = Pipeline(ctx)
        stack.callback(pipeline.close, wait=False)
        if config.webhook is not None:
            stack.enter_context(_receiver(config, pipeline))
        neighbours = Neighbours(config, ledger, clock, state_dir=state_dir, roots=ctx.roots)
        stack.callback(neighbours.leave)
        yield Runtime(ctx, pipeline, neighbours)


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
def _receiver(config: Config, pipeline: Pipeline) -> Iterator[str]:
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
                                on_bad_signature=bad_signature)
    with ExitStack() as stack:
        try:
            url = stack.enter_context(webhook.serve(receiver, host, port))
        except OSError as exc:
            raise ConfigError("webhook.listen",
                              f"cannot listen on {hook.listen}: {exc.strerror or exc}") from exc
        yield url


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGINT (Ctrl-C) set ``stop``: intake stops and running transfers drain.
    SIGHUP, which would otherwise end the process without a word, is logged and ignored: nothing
    is lost or done twice (reloading the configuration is not implemented yet: restart)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        logger.info("received {}; stopping intake and draining", signal.Signals(signum).name)
        stop.set()

    def hangup(_signum: int, _frame: FrameType | None) -> None:
        logger.warning("received SIGHUP: ignored (this version does not reload its "
                       "configuration; restart ccwatch to apply changes)")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    if hasattr(signal, "SIGHUP"):  # not on Windows
        signal.signal(signal.SIGHUP, hangup)
    if hasattr(signal, "SIGBREAK"):  # Windows: Ctrl-Break in the console
        signal.signal(signal.SIGBREAK, handler)


class Daemon:
    """``ccwatch run``: watch until told to stop, then drain within ``shutdown_grace_s``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.stop_event = threading.Event()
        self._watchers: list[watch.FolderWatcher] = []

    def watchers(self) -> tuple[watch.FolderWatcher, ...]:
        """The running folder watchers, one per folder (empty before ``run`` starts them)."""
        return tuple(self._watchers)

    def _start_watchers(self) -> None:
        for folder in self.runtime.ctx.config.folders:
            mode, reason = watch.choose_mode(folder.input, folder.watch)
            logger.bind(folder=folder.name).info("watching {} with {} ({})", folder.input, mode,
                                                 reason)
            self._watchers.append(self._watcher(folder, mode))

    def _watcher(self, folder: FolderConfig, mode: str) -> watch.FolderWatcher:
        watcher = watch.FolderWatcher(
            folder.input, mode=mode, recursive=folder.recursive, poll_s=folder.poll_s,
            on_path=functools.partial(self.runtime.pipeline.note, folder.name))
        watcher.start()
        return watcher

    def _healthy(self) -> bool:
        """Restart a dead watcher (its thread can die with the filesystem under it); True while
        the pipeline keeps turning, so systemd's watchdog restarts a daemon that has hung."""
        for i, (folder, watcher) in enumerate(zip(self.runtime.ctx.config.folders, self._watchers,
                                                  strict=True)):
            if not watcher.alive():
                logger.bind(folder=folder.name).error("the watcher stopped; starting it again")
                with contextlib.suppress(Exception):
                    watcher.stop()
                try:
                    self._watchers[i] = self._watcher(folder, watcher.mode)
                except OSError as exc:  # the rescan still covers the folder meanwhile
                    logger.bind(folder=folder.name).error("cannot watch again yet: {}", exc)
                self.runtime.pipeline.scan(folder)  # what happened while nobody watched
        return self.runtime.pipeline.seconds_since_step() < STALL_S

    def _schedule(self, scheduler: BackgroundScheduler) -> None:
        pipeline = self.runtime.pipeline
        scheduler.add_job(pipeline.step, "interval", seconds=STEP_S, id="step",
                          max_instances=1, coalesce=True)
        for folder in self.runtime.ctx.config.folders:
            scheduler.add_job(self.runtime.scan, "interval", args=[folder], seconds=folder.rescan_s,
                              id=f"rescan-{folder.name}", max_instances=1, coalesce=True)

    def status_line(self) -> str:
        p = self.runtime.pipeline
        pause = p.gate.pause
        paused = f", PAUSED: {pause.reason}" if pause else ""
        return (f"{p.active_count()} in progress, {p.delivered} done, {p.failed} failed"
                f"{paused}")

    def install_signal_handlers(self) -> None:
        install_signal_handlers(self.stop_event)

    def run(self) -> bool:
        """Run until ``stop_event``; True when the drain finished within the grace period."""
        pipeline = self.runtime.pipeline
        config = self.runtime.ctx.config
        scheduler = BackgroundScheduler(job_defaults={"misfire_grace_time": None})
        try:
            self._start_watchers()
            for folder in config.folders:
                found = self.runtime.scan(folder)
                logger.bind(folder=folder.name).info("startup scan: {} new file(s)", found)
            self._schedule(scheduler)
            scheduler.start()
            sd_notify("READY=1\nSTATUS=" + self.status_line())
            keepalive = watchdog_interval_s()
            tick = min(keepalive, 5.0) if keepalive else 5.0
            while not self.stop_event.wait(tick):
                if self._healthy():
                    sd_notify("WATCHDOG=1\nSTATUS=" + self.status_line())
                else:
                    logger.error("the pipeline has not turned for {:.0f} s; withholding the "
                                 "watchdog keep-alive", self.runtime.pipeline.seconds_since_step())
        finally:
            sd_notify("STOPPING=1")
            pipeline.stop_intake()
            for watcher in self._watchers:
                with contextlib.suppress(Exception):
                    watcher.stop()
        drained = self._drain(config.daemon.shutdown_grace_s)
        scheduler.shutdown(wait=False)
        return drained

    def _drain(self, grace_s: float) -> bool:
        return drain(self.runtime, grace_s,
                     tick=lambda: sd_notify("WATCHDOG=1\nSTATUS=draining: " + self.status_line()))


def drain(runtime: Runtime, grace_s: float, *, tick: Callable[[], object] = lambda: None) -> bool:
    """Wait up to ``grace_s`` for running transfers; True when none is left."""
    pipeline = runtime.pipeline
    clock = runtime.ctx.clock
    deadline = clock.monotonic() + grace_s
    while pipeline.busy_count() and clock.monotonic() < deadline:
        tick()
        clock.sleep(0.05)
    left = pipeline.busy_count()
    if left:
        logger.warning("{} transfer(s) still running after {} s; they resume on next start",
                       left, grace_s)
        return False
    logger.info("stopped; {} file(s) left in the ledger resume on next start",
                pipeline.active_count())
    return True


def run_once(runtime: Runtime, *, on_progress: Callable[[int, int], None] | None = None,
             stop: threading.Event | None = None) -> ExitCode:
    """Settle and convert what is in the folders now, then return (``ccwatch run --once``).

    ``stop`` set (Ctrl-C): intake stops, running transfers drain within ``shutdown_grace_s``,
    and the result is ``INTERRUPTED``; the rest resumes from the ledger on the next run."""
    pipeline = runtime.pipeline
    clock = runtime.ctx.clock
    total = pipeline.active_count()
    for folder in runtime.ctx.config.folders:
        total += runtime.scan(folder)
    while True:
        if stop is not None and stop.is_set():
            pipeline.stop_intake()
            drain(runtime, runtime.ctx.config.daemon.shutdown_grace_s)
            return ExitCode.INTERRUPTED
        pipeline.step()
        if on_progress:
            on_progress(pipeline.delivered + pipeline.failed, total)
        if pipeline.gate.pause is not None:
            logger.error("stopping: {}", pipeline.gate.pause.reason)
            return ExitCode.ACCOUNT
        if pipeline.idle():
            break
        clock.sleep(STEP_S / 2)
    return ExitCode.FILES_FAILED if pipeline.failed else ExitCode.OK
