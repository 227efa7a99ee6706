"""System-test fixtures: a bindfs FUSE mirror, the stand-in for a network share.

Writes made in the underlying folder reach the mirror without any change event, exactly like a file
dropped on an NFS/SMB share by another machine, so only polling can see them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ccwatch.testing import wait_for

_DEADLINE_S = 10.0


def _fuse_missing() -> str | None:
    if shutil.which("bindfs") is None:
        return "bindfs is not installed (apt-get install bindfs fuse3; .ci/run does it)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing: this machine (container?) cannot mount FUSE filesystems"
    return None


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    wait_for(condition, timeout=_DEADLINE_S, interval=0.02, message=what)


def _unmount(mount_dir: Path) -> None:
    commands = [[tool, "-u", str(mount_dir)] for tool in ("fusermount3", "fusermount")]
    commands.append(["umount", str(mount_dir)])

    def unmounted() -> bool:
        for command in commands:
            if not os.path.ismount(mount_dir):
                return True
            if shutil.which(command[0]):
                subprocess.run(command, capture_output=True, check=False)
        return not os.path.ismount(mount_dir)

    try:
        wait_for(unmounted, timeout=_DEADLINE_S, interval=0.05, message=f"{mount_dir} unmounted")
    except AssertionError:
        # still busy (a file left open): detach it lazily rather than leak the mount
        subprocess.run(["umount", "-l", str(mount_dir)], capture_output=True, check=False)


@contextlib.contextmanager
def bindfs_mirror(source: Path, mount_dir: Path, *options: str) -> Iterator[Path]:
    """Mount ``source`` at ``mount_dir`` with bindfs (extra ``options``, e.g. "-r"); unmount after.

    Skips the test, saying why, on a machine without bindfs or /dev/fuse."""
    missing = _fuse_missing()
    if missing:
        if os.environ.get("CI"):  # CI installs bindfs: there a missing mount is a failure
            pytest.fail(missing)
        pytest.skip(missing)
    mount_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["bindfs", "--no-allow-other", *options, str(source), str(mount_dir)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if done.returncode != 0:
        pytest.fail(f"bindfs could not mount {source} at {mount_dir}: {done.stderr.strip()}")
    try:
        _wait_until(lambda: os.path.ismount(mount_dir), f"{mount_dir} is mounted")
        yield mount_dir
    finally:
        _unmount(mount_dir)


class Tmpfs:
    """``mount -t tmpfs`` on folders (root only: fails in CI, skips elsewhere otherwise); every
    mount still there is undone after the test."""

    def __init__(self) -> None:
        self.mounted: list[Path] = []

    def mount(self, mount_dir: Path, size: str = "8m") -> Path:
        if os.geteuid() != 0:
            why = "mounting a tmpfs needs root (CI runs as root)"
            if os.environ.get("CI"):
                pytest.fail(why)
            pytest.skip(why)
        mount_dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(mount_dir)], capture_output=True, text=True, check=False,
                              timeout=30)
        if done.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs at {mount_dir}: {done.stderr.strip()}")
        self.mounted.append(mount_dir)
        return mount_dir

    def unmount(self, mount_dir: Path) -> None:
        _unmount(mount_dir)

    def cleanup(self) -> None:
        for mount_dir in reversed(self.mounted):
            while os.path.ismount(mount_dir):
                subprocess.run(["umount", "-l", str(mount_dir)], capture_output=True, check=False)


@pytest.fixture
def tmpfs() -> Iterator[Tmpfs]:
    mounts = Tmpfs()
    try:
        yield mounts
    finally:
        mounts.cleanup()


@pytest.fixture
def bindfs_mount(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(underlying_dir, mount_dir): a FUSE mirror of a fresh folder; write in the first, watch the
    second."""
    underlying = tmp_path / "underlying"
    underlying.mkdir()
    with bindfs_mirror(underlying, tmp_path / "mirror") as mount_dir:
        yield underlying, mount_dir
