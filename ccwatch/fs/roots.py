"""The configured folders as roots: reached without following symlinks below them, and
unavailable (never re-created) while missing or unmounted.

A root is opened by its configured path (a symlink *there* is the operator's choice and followed).
Below it, :meth:`Root.directory` walks one component at a time with ``O_NOFOLLOW |
O_DIRECTORY``, so a subfolder swapped for a symlink is never followed.

A root must still be the filesystem it was when first seen: an unmounted share shows the mount
point's own folder on the filesystem below, and writing there would hide files from everyone once
the share is back. A root that is missing or shows that filesystem raises
:class:`~ccwatch.errors.FolderUnavailable`, said once in the log when it goes and once when it
returns. A share mounted again (a new device number) is simply available again.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from loguru import logger

from ccwatch.errors import FolderUnavailable

CLOEXEC = getattr(os, "O_CLOEXEC", 0)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | CLOEXEC


class SymlinkInPath(OSError):
    """A component below the root is a symlink (or not a folder): it is not followed."""

    def __init__(self, root: Path, relpath: str) -> None:
        super().__init__(errno.ELOOP, f"{relpath} under {root} passes through a symlink")


class Root:
    """One configured folder. Its device is recorded the first time the root is seen, with the
    device of the filesystem its mount sits on: seeing that one there later means unmounted."""

    def __init__(self, path: Path, *, on_change: Callable[[Path, str | None], None] | None = None
                 ) -> None:
        self.path = path
        self.device: int | None = None
        self.below: int | None = None  # the filesystem under the root's mount (None: no mount)
        self.problem: str | None = None  # why the root is unavailable now (None: available)
        self._on_change = on_change
        self._lock = threading.Lock()

    def _set_problem(self, problem: str | None) -> None:
        with self._lock:
            if problem == self.problem:
                return
            was, self.problem = self.problem, problem
        # One line per change of state, not one per file and step.
        if problem is not None and was is None:
            logger.warning("{} is unavailable: {}; nothing is written or moved there until it "
                           "returns", self.path, problem)
        elif problem is None:
            logger.info("{} is available again; work there resumes", self.path)
        if self._on_change is not None:
            self._on_change(self.path, problem)

    def open(self) -> int:
        """An fd on the root itself, after checking it is there and on its first device."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | CLOEXEC)
        except OSError as exc:
            problem = "it does not exist" if exc.errno == errno.ENOENT else (
                f"it cannot be opened ({exc.strerror})")
            self._set_problem(problem)
            raise FolderUnavailable(self.path, problem) from exc
        device = os.fstat(fd).st_dev
        if self.device is None:
            self.device, self.below = device, _device_below(self.path, device)
        elif device != self.device:
            if device == self.below:
                os.close(fd)
                problem = "it is not mounted (the folder there is on the filesystem below)"
                self._set_problem(problem)
                raise FolderUnavailable(self.path, problem)
            self.device = device  # mounted again: a new mount has a new device number
        self._set_problem(None)
        return fd

    def check(self) -> None:
        """Raise FolderUnavailable unless the root is there, on its first device."""
        os.close(self.open())

    @contextmanager
    def directory(self, parts: Sequence[str], *, create: bool = False) -> Iterator[int]:
        """An fd on ``root/parts…``, reached without following any symlink; missing folders are
        created (below the root only) when ``create``. FileNotFoundError or SymlinkInPath else."""
        fd = self.open()
        try:
            for name in parts:
                child = _descend(fd, name, create=create, root=self.path, parts=parts)
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)


def _device_below(path: Path, device: int) -> int | None:
    """The device of the nearest folder above ``path`` on another filesystem: what ``path`` shows
    once its mount is gone. None when ``path`` is on the same filesystem as ``/``."""
    for parent in path.parents:
        try:
            parent_device = os.stat(parent).st_dev
        except OSError:
            return None
        if parent_device != device:
            return parent_device
    return None


class Roots:
    """Every configured root by its path, made on first use: one availability state per root."""

    def __init__(self, on_change: Callable[[Path, str | None], None] | None = None) -> None:
        self._roots: dict[Path, Root] = {}
        self._lock = threading.Lock()
        self.on_change = on_change

    def __call__(self, path: Path) -> Root:
        with self._lock:
            root = self._roots.get(path)
            if root is None:
                root = self._roots[path] = Root(path, on_change=self._changed)
            return root

    def _changed(self, path: Path, problem: str | None) -> None:
        if self.on_change is not None:
            self.on_change(path, problem)

    def unavailable(self) -> dict[str, str]:
        """Each root unavailable now, with why."""
        with self._lock:
            return {str(r.path): r.problem for r in self._roots.values() if r.problem}


def _descend(fd: int, name: str, *, create: bool, root: Path, parts: Sequence[str]) -> int:
    """Open the folder ``name`` in ``fd``; the new fd."""
    try:
        try:
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise
            with suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=fd)
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise SymlinkInPath(root, "/".join(parts)) from exc
        raise
    return child
