"""What every benchmark needs: a workspace, a config, a served emulator, measured child processes."""

from __future__ import annotations

import atexit
import compileall
import contextlib
import functools
import io
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from bench.child import BenchError, Child, Usage
from ccwatch.emulator import Emulator, serve
from ccwatch.testing import TO_JPG

REPO = Path(__file__).resolve().parents[1]
SDK_DIR = REPO / ".sdk"  # git-ignored; the official SDK lives here, apart from our venv
SDK_SPEC = "cloudconvert==2.1.0"
SDK_CLIENT = Path(__file__).with_name("sdk_client.py")
API_KEY = "bench-key"
MEMORY_FS = "/dev/shm"

# The official SDK: upload the file, export the upload as it is (no conversion work at all).
PASSTHROUGH = """
[templates.passthrough.tasks.in]
operation = "import/upload"
[templates.passthrough.tasks.out]
operation = "export/url"
input = "in"
"""
TEMPLATES = {"to-jpg": TO_JPG, "passthrough": PASSTHROUGH}

# full: the figures in docs/benchmarks.md; quick: small sizes, a ~1 min look; smoke: tiny sizes
# that only run every code path (the test suite's check), whose figures mean nothing.
Size = Literal["full", "quick", "smoke"]
_T = TypeVar("_T")


def by_size(size: Size, *, full: _T, quick: _T, smoke: _T) -> _T:
    return {"full": full, "quick": quick, "smoke": smoke}[size]


def measure_all(size: Size, *measures: Callable[[], _T]) -> list[_T]:
    """Run the measures one after another, so none disturbs another's figures; a smoke run's
    figures mean nothing, so it overlaps them to finish in seconds."""
    if size != "smoke":
        return [measure() for measure in measures]
    with ThreadPoolExecutor(len(measures)) as pool:
        return list(pool.map(lambda measure: measure(), measures))


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def input(self) -> Path:
        return self.root / "in"

    @property
    def output(self) -> Path:
        return self.root / "out"

    @property
    def quarantine(self) -> Path:
        return self.root / "failed"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def staging(self) -> Path:
        """Files are prepared here, then copied into ``input`` when a benchmark "drops" them."""
        return self.root / "staging"

    @property
    def config_path(self) -> Path:
        return self.root / "ccwatch.toml"


@functools.cache
def _trash() -> Path:
    """Where finished workspaces wait until the bench exits. ext4 without a journal skips inodes
    freed in the last minutes when it allocates one: a workspace deleted just before the next run
    made each of that run's creates scan the freed ones, a cost of the harness, not of ccwatch."""
    trash = Path(tempfile.mkdtemp(prefix="ccwatch-bench-trash-"))
    atexit.register(shutil.rmtree, trash, ignore_errors=True)
    return trash


@contextlib.contextmanager
def workspace(name: str) -> Iterator[Workspace]:
    ws = Workspace(Path(tempfile.mkdtemp(prefix=f"ccwatch-bench-{name}-")))
    try:
        for folder in (ws.input, ws.output, ws.quarantine, ws.state, ws.staging):
            folder.mkdir()
        yield ws
    finally:
        ws.root.rename(_trash() / ws.root.name)  # a rename frees no inode


@dataclass(frozen=True)
class Settings:
    """The ccwatch settings a benchmark runs with (printed beside its figures)."""

    template: str = "to-jpg"
    match: str = "*.png"
    settle_s: float = 0.5
    watch: str = "events"
    poll_s: float = 5.0
    rescan_s: float = 300.0
    max_in_flight: int = 16
    upload_workers: int = 4
    download_workers: int = 4
    poll_interval_s: float = 0.25
    poll_max_s: float = 1.0
    max_file_size: str = "1 GB"
    tracking: str = "wait"

    def describe(self) -> str:
        return (f"template {self.template}, settle_s {self.settle_s}, watch {self.watch}"
                f"{f' (poll_s {self.poll_s})' if self.watch == 'poll' else ''}, max_in_flight "
                f"{self.max_in_flight}, upload/download workers {self.upload_workers}/"
                f"{self.download_workers}, poll_interval_s {self.poll_interval_s}, poll_max_s "
                f"{self.poll_max_s}, tracking {self.tracking}")


def write_config(ws: Workspace, base_url: str, settings: Settings) -> Path:
    s = settings
    text = f"""
[cloudconvert]
endpoint = "{base_url}"

[daemon]
state_dir = "{ws.state}"
max_in_flight = {s.max_in_flight}
upload_workers = {s.upload_workers}
download_workers = {s.download_workers}
poll_interval_s = {s.poll_interval_s}
poll_max_s = {s.poll_max_s}
tracking = "{s.tracking}"
shutdown_grace_s = 10

{TEMPLATES[s.template]}

[[folders]]
name = "inbox"
input = "{ws.input}"
output = "{ws.output}"
quarantine = "{ws.quarantine}"
recursive = true
watch = "{s.watch}"
poll_s = {s.poll_s}
rescan_s = {s.rescan_s}
settle_s = {s.settle_s}
max_file_size = "{s.max_file_size}"

[[folders.rules]]
match = ["{s.match}"]
template = "{s.template}"
"""
    ws.config_path.write_text(text)
    return ws.config_path


@contextlib.contextmanager
def emulator(latency_s: float = 0.0, *, in_memory: bool = False) -> Iterator[Emulator]:
    """A fresh emulator served in this process on a free loopback port (``.base_url`` set).

    ``in_memory``: its files on a memory filesystem (``/dev/shm``, where there is one), as the
    service keeps them on its own disks: its job deletions then free no inode on the disk the
    client under test creates its outputs on (see ``_trash``)."""
    with contextlib.ExitStack() as stack:
        storage = None
        if in_memory and os.path.isdir(MEMORY_FS):
            storage = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="ccwatch-bench-emulator-", dir=MEMORY_FS)))
        # The benchmarks measure ccwatch, not an account's 500 requests a minute.
        emu = stack.enter_context(Emulator(
            api_key=API_KEY, webhook_secret="bench-secret", latency_s=latency_s,
            rate_limit_per_minute=1_000_000, storage=storage))
        stack.enter_context(serve(emu))
        yield emu


# --- ccwatch as a child ---------------------------------------------------------------------


@functools.cache
def _compiled() -> None:
    """Byte-compile ccwatch once, as installing its wheel does: an editable install run with
    PYTHONDONTWRITEBYTECODE set would compile every module again at each start (~0.1 s)."""
    compileall.compile_dir(REPO / "ccwatch", quiet=1)


def ccwatch_args(config: Path, *, once: bool) -> list[str]:
    _compiled()
    return [sys.executable, "-m", "ccwatch", "run", "-c", str(config), *(["--once"] if once else [])]


def ccwatch_env() -> dict[str, str]:
    return {"CLOUDCONVERT_API_KEY": API_KEY}


def run_ccwatch_once(ws: Workspace, config: Path, timeout_s: float) -> Usage:
    with Child(ccwatch_args(config, once=True), ws.root / "once.log", env=ccwatch_env(),
               cwd=ws.root) as child:
        usage = child.wait(timeout_s)
        if usage.returncode != 0:
            raise BenchError(f"ccwatch run --once exited {usage.returncode}:\n{child.log_tail()}")
        return usage


def wait_until(condition: Callable[[], object], timeout_s: float, what: str,
               child: Child | None = None, interval_s: float = 0.02) -> float:
    """Poll ``condition`` until true; returns the monotonic time it became true."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return time.monotonic()
        if child is not None and child.proc.poll() is not None:
            raise BenchError(f"the process died while waiting for {what}:\n{child.log_tail()}")
        if time.monotonic() > deadline:
            tail = f"; its log ends:\n{child.log_tail()}" if child else ""
            raise BenchError(f"gave up after {timeout_s} s waiting for {what}{tail}")
        time.sleep(interval_s)


def daemon_ready(child: Child, folders: int = 1) -> Callable[[], bool]:
    """True once the daemon logged its start-up scan for every folder (it is watching by then)."""
    return lambda: child.log_text().count("startup scan:") >= folders


def count_files(folder: Path) -> int:
    """Finished files under ``folder`` (hidden names, i.e. ccwatch's temp files, do not count)."""
    return sum(1 for _, _, files in os.walk(folder) for f in files if not f.startswith("."))


@dataclass(frozen=True)
class DaemonRun:
    seconds: float  # from the drop until every output exists
    cpu_s: float  # the daemon's CPU over that span (start-up excluded)
    usage: Usage  # the whole process, reaped after SIGTERM


def daemon_drop(ws: Workspace, config: Path, paths: Sequence[Path], timeout_s: float) -> DaemonRun:
    """Start ``ccwatch run``, wait until it watches, drop ``paths`` into the input at once, wait for
    all outputs, then SIGTERM it."""
    import psutil

    with Child(ccwatch_args(config, once=False), ws.root / "daemon.log", env=ccwatch_env(),
               cwd=ws.root) as child:
        wait_until(daemon_ready(child), 60, "the daemon to start watching", child)
        proc = psutil.Process(child.pid)
        cpu_before = sum(proc.cpu_times()[:2])
        started = time.monotonic()
        drop(paths, ws.input)
        finished = wait_until(lambda: count_files(ws.output) >= len(paths), timeout_s,
                              f"{len(paths)} outputs", child, interval_s=0.05)
        cpu_s = sum(proc.cpu_times()[:2]) - cpu_before
        child.terminate()
        usage = child.wait(60)
        if usage.returncode != 0:
            raise BenchError(f"ccwatch run exited {usage.returncode} after SIGTERM:\n{child.log_tail()}")
        return DaemonRun(finished - started, cpu_s, usage)


# --- inputs ---------------------------------------------------------------------------------


def png_bytes(size: tuple[int, int] = (32, 24), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def stage_images(ws: Workspace, count: int, prefix: str = "img") -> list[Path]:
    """``count`` small PNGs in the staging folder (same pixels, distinct names)."""
    data = png_bytes()
    paths = [ws.staging / f"{prefix}{i:05d}.png" for i in range(count)]
    for path in paths:
        path.write_bytes(data)
    return paths


def place_images(ws: Workspace, count: int) -> None:
    """``count`` small PNGs already in the input folder when ccwatch starts (made in staging,
    then renamed in, in name order)."""
    for path in stage_images(ws, count):
        path.rename(ws.input / path.name)


def drop(paths: Sequence[Path], into: Path) -> None:
    """Copy files in as fast as possible: each is created and closed, one change event per file."""
    for path in paths:
        shutil.copyfile(path, into / path.name)


# --- the official SDK ------------------------------------------------------------------------


_SDK_INSTALL = threading.Lock()  # a smoke run starts SDK contenders side by side


def ensure_sdk() -> Path:
    with _SDK_INSTALL:
        if not (SDK_DIR / "cloudconvert" / "__init__.py").exists():
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            "--target", str(SDK_DIR), SDK_SPEC], check=True, timeout=300)
    return SDK_DIR


def sdk_child(ws: Workspace, mode: str, base_url: str, template: str, count: int, *,
              input_dir: Path, settle_s: float = 0.0, log_name: str = "sdk.log") -> Child:
    """The SDK script (see sdk_client.py) as a child process with the SDK on its path."""
    args = [sys.executable, str(SDK_CLIENT), mode, base_url, API_KEY, template, str(input_dir),
            str(ws.output), str(count), str(settle_s)]
    return Child(args, ws.root / log_name, env={"PYTHONPATH": str(ensure_sdk())}, cwd=ws.root)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
