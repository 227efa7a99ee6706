"""Helpers for tests and benchmarks: waiting with a deadline, sample images, config text.

Shipped with the package so the benchmarks and anyone embedding ccwatch can use them too.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.02,
             message: str = "condition") -> T:
    """Poll ``condition`` until it returns something truthy; fail with ``message`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def make_image(path: Path, *, size: tuple[int, int] = (32, 24), fmt: str | None = None,
               color: tuple[int, int, int] = (200, 30, 30)) -> Path:
    """Write a small real image (format from the suffix unless given)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def config_text(*, endpoint: str, state_dir: Path, input_dir: Path, output: Path, quarantine: Path,
                rules: Sequence[str], templates: str, folder_extra: str = "",
                daemon_extra: str = "", top_extra: str = "", settle_s: float = 0.3,
                cloudconvert_extra: str = "", delete_jobs: bool = False) -> str:
    """A whole TOML config for one folder; ``rules`` are ``[[folders.rules]]`` bodies.

    ``delete_jobs`` is off unless asked for: most tests count and inspect the emulator's jobs
    after the fact (one job per file, their tags), which deleting them would hide.
    """
    rule_text = "\n".join(f"[[folders.rules]]\n{r}\n" for r in rules)
    return f"""{top_extra}
[cloudconvert]
endpoint = "{endpoint}"
{cloudconvert_extra}

[daemon]
state_dir = "{state_dir}"
poll_interval_s = 0.1
poll_max_s = 0.5
shutdown_grace_s = 10
delete_jobs = {"true" if delete_jobs else "false"}
{daemon_extra}

{templates}

[[folders]]
name = "inbox"
input = "{input_dir}"
output = "{output}"
quarantine = "{quarantine}"
settle_s = {settle_s}
poll_s = 0.2
{folder_extra}

{rule_text}
"""


TO_JPG = """
[templates.to-jpg.tasks.in]
operation = "import/upload"
[templates.to-jpg.tasks.convert]
operation = "convert"
input = "in"
output_format = "jpg"
[templates.to-jpg.tasks.out]
operation = "export/url"
input = "convert"
"""

TO_PNG = TO_JPG.replace("to-jpg", "to-png").replace('"jpg"', '"png"')
TO_PDF = TO_JPG.replace("to-jpg", "to-pdf").replace('"jpg"', '"pdf"')


class PostgresCluster:
    """A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` and ``pg_ctl`` in a temp
    dir, on a free loopback port, with one trusted user ``ccwatch``.

    PostgreSQL refuses to run as root, so under root the server runs as ``nobody``.
    """

    def __init__(self) -> None:
        self.bindir = _pg_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="ccwatch-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            import pwd

            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
            self._as_user = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                             "--clear-groups"]
        self._pg("initdb", "-D", str(self.data), "-U", "ccwatch", "--auth=trust", "-E", "UTF8",
                 "--no-sync")

    def _pg(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self._as_user, str(self.bindir / tool), *args], capture_output=True,
                              text=True, check=False, timeout=120, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        # -F: no fsync (a throwaway cluster); the socket dir is ours, not /var/run/postgresql.
        options = f"-p {self.port} -h 127.0.0.1 -k {self.root} -F"
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
                 "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self, name: str = "ccwatch") -> str:
        """A new empty database; its URL."""
        import psycopg

        admin = f"postgresql://ccwatch@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://ccwatch@127.0.0.1:{self.port}/{name}"

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A started cluster (``create_database`` makes databases in it); stopped and removed afterwards."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop("immediate")
    finally:
        cluster.remove()


def _pg_bindir() -> Path:
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    # Debian keeps the server binaries out of PATH, one folder per major version.
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
