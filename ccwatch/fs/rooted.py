"""File operations that stay inside a configured root, whatever happens to the paths below it.

A user who can write to an inbox can swap any subfolder for a symlink at any moment. So nothing here
resolves a path below a root by name: each operation gets the folder's fd from
:meth:`~ccwatch.fs.roots.Root.directory` (no symlink followed, roots checked to be there) and acts
with ``*at()`` calls on it (``dir_fd=``). A file is read from the very fd whose ``fstat`` matched the
recorded version; renames never overwrite unless asked, and a move across filesystems copies,
fsyncs and only then deletes the source.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import stat
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from loguru import logger

from ccwatch.fs import (
    _NO_HARDLINKS,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    FileStat,
    fit_name,
    is_own_temp,
    numbered,
)
from ccwatch.fs.roots import CLOEXEC, DIR_FLAGS, Root, SymlinkInPath

_CHUNK = 1024 * 1024

Version = FileStat  # what a file was when it settled: an open or delete acts only on it


def split(relpath: str | PurePosixPath) -> tuple[tuple[str, ...], str]:
    """(parent folder names, file name) of a relative path; ValueError for one that escapes.
    As ``PurePosixPath(relpath).parts`` would split it (empty and "." components dropped),
    without building paths: this runs several times per file."""
    text = relpath if isinstance(relpath, str) else relpath.as_posix()
    parts = [p for p in text.split("/") if p and p != "."]
    if not parts or text.startswith("/") or ".." in parts:
        raise ValueError(f"not a relative path below a root: {relpath!r}")
    return tuple(parts[:-1]), parts[-1]


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _matches(st: os.stat_result | None, version: Version) -> bool:
    return (st is not None and stat.S_ISREG(st.st_mode) and st.st_size == version.size
            and st.st_mtime_ns == version.mtime_ns)


def is_regular(dir_fd: int, name: str) -> bool:
    """``name`` in ``dir_fd`` is a regular file itself (not a symlink to one)."""
    st = _lstat(dir_fd, name)
    return st is not None and stat.S_ISREG(st.st_mode)


def stat_file(root: Root, relpath: str | PurePosixPath) -> Version | None:
    """Size and mtime of the regular file at ``relpath``; None if missing, not a regular file, or
    reached through a symlink."""
    parent, name = split(relpath)
    try:
        with root.directory(parent) as fd:
            st = _lstat(fd, name)
    except (FileNotFoundError, SymlinkInPath):
        return None
    if st is None or not stat.S_ISREG(st.st_mode):
        return None
    return Version(st.st_size, st.st_mtime_ns)


def exists(root: Root, relpath: str | PurePosixPath) -> bool:
    """Anything at ``relpath`` (a dangling symlink too); SymlinkInPath when a folder on the way
    is a symlink (nothing is ever written through it)."""
    parent, name = split(relpath)
    try:
        with root.directory(parent) as fd:
            return _lstat(fd, name) is not None
    except FileNotFoundError:
        return False


@contextmanager
def open_version(root: Root, relpath: str | PurePosixPath, version: Version
                 ) -> Iterator[BinaryIO | None]:
    """The file opened for reading if it is still ``version``, else None. Upload from this very
    handle: it is the file that was checked, whatever the name points to meanwhile."""
    parent, name = split(relpath)
    try:
        with root.directory(parent) as dir_fd:
            # O_NONBLOCK: a FIFO swapped in must not block the open; no effect on regular files.
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | CLOEXEC,
                         dir_fd=dir_fd)
    except (FileNotFoundError, SymlinkInPath):
        yield None
        return
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the file itself is a symlink
            yield None
            return
        raise
    with os.fdopen(fd, "rb") as fh:
        yield fh if _matches(os.fstat(fd), version) else None


def unchanged(fh: BinaryIO, root: Root, relpath: str | PurePosixPath, version: Version) -> bool:
    """After reading ``fh`` whole: it is still ``version``, and ``relpath`` holds no other file
    (a file saved over it is a new version). A file renamed away is still unchanged: intake
    follows it to its new name."""
    st = os.fstat(fh.fileno())
    if not _matches(st, version):
        return False
    parent, name = split(relpath)
    try:
        with root.directory(parent) as fd:
            now = _lstat(fd, name)
    except (FileNotFoundError, SymlinkInPath):
        return True
    return now is None or (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def unlink_version(root: Root, relpath: str | PurePosixPath, version: Version) -> bool:
    """Delete the file at ``relpath`` if it is still ``version``; True if it was deleted."""
    parent, name = split(relpath)
    try:
        with root.directory(parent) as fd:
            if not _matches(_lstat(fd, name), version):
                return False
            os.unlink(name, dir_fd=fd)
            _fsync(fd)
            return True
    except (FileNotFoundError, SymlinkInPath):
        return False


def remove(root: Root, relpath: str | PurePosixPath) -> None:
    """Delete whatever file is at ``relpath`` (nothing if it is gone)."""
    parent, name = split(relpath)
    with suppress(FileNotFoundError, SymlinkInPath), root.directory(parent) as fd:
        os.unlink(name, dir_fd=fd)


def remove_temps(root: Root) -> int:
    """Delete the temp files a crashed run left below ``root``; how many. Walked by directory
    fds like every other operation, so a symlinked folder is not descended into."""
    removed = 0
    stack = [root.open()]
    while stack:
        fd = stack.pop()
        try:
            for entry in os.scandir(fd):
                if entry.is_dir(follow_symlinks=False):
                    with suppress(OSError):
                        stack.append(os.open(entry.name, DIR_FLAGS, dir_fd=fd))
                elif is_own_temp(entry.name) and entry.is_file(follow_symlinks=False):
                    with suppress(FileNotFoundError):
                        os.unlink(entry.name, dir_fd=fd)
                        removed += 1
        except OSError as exc:
            logger.warning("cannot clean temp files in {}: {}", root.path, exc)
        finally:
            os.close(fd)
    return removed


def _fsync(fd: int) -> None:
    # Makes a rename durable; some filesystems (CIFS, some FUSE) refuse fsync on a directory.
    with suppress(OSError):
        os.fsync(fd)


def _free_name(dir_fd: int, name: str, taken: Iterable[str] = (), reserve: int = 0) -> str:
    """``name`` if free in ``dir_fd``, else the first free ``stem (n).ext``; always short enough
    that ``reserve`` more bytes (``.error.json``) still fit the filesystem's name limit."""
    taken = set(taken)
    n = 0
    while True:
        candidate = fit_name(numbered(name, n), reserve=reserve)
        if candidate not in taken and _lstat(dir_fd, candidate) is None:
            return candidate
        n += 1


# While an output is written, its pages are handed to the disk every this many bytes, so the final
# fsync has next to nothing left to wait for (the writeback overlaps the download instead).
_WRITEBACK_EVERY = 32 << 20
_SYNC_FILE_RANGE_WRITE = 2  # start writeback of dirty pages in the range; do not wait


def _sync_file_range() -> Any:
    """Linux's sync_file_range(2) through libc, or None elsewhere (then only the fsync syncs)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_START_WRITEBACK = _sync_file_range()


class Staged:
    """A new temp file in a folder below a root, written and then renamed into place."""

    def __init__(self, dir_fd: int) -> None:
        self.dir_fd = dir_fd
        self.temp = f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"
        # 0o666 minus the umask like any program's output (mkstemp's 0o600 would hide it on a share)
        fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | CLOEXEC,
                     0o666, dir_fd=dir_fd)
        self.file = os.fdopen(fd, "wb", buffering=0)  # chunks written as they come: no buffer copy
        self.written = self._handed = 0
        self.committed: str | None = None

    def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:  # an unbuffered write may take only part of it
            view = view[self.file.write(view) or 0:]
        self.written += len(chunk)
        if _START_WRITEBACK is not None and self.written - self._handed >= _WRITEBACK_EVERY:
            _START_WRITEBACK(self.file.fileno(), self._handed, self.written - self._handed,
                             _SYNC_FILE_RANGE_WRITE)
            self._handed = self.written

    def _finish(self) -> None:
        if not self.file.closed:
            os.fsync(self.file.fileno())
            self.file.close()

    def commit(self, name: str, *, overwrite: bool) -> bool:
        """Rename the temp to ``name``; without ``overwrite`` an existing ``name`` is kept and
        False returned (the temp is then removed on leaving :func:`staged`)."""
        self._finish()
        if overwrite:
            os.rename(self.temp, name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        elif not _rename_if_absent(self.dir_fd, self.temp, self.dir_fd, name):
            return False
        self.committed = name
        _fsync(self.dir_fd)
        return True

    def commit_unique(self, name: str, *, reserve: int = 0) -> str:
        """Rename the temp to ``name`` or the first free ``name (n)``; never overwrites."""
        while True:
            target = _free_name(self.dir_fd, name, reserve=reserve)
            if self.commit(target, overwrite=False):
                return target


@contextmanager
def staged(root: Root, parent: Sequence[str]) -> Iterator[Staged]:
    """A :class:`Staged` temp in ``root/parent`` (folders created below the root, never through a
    symlink); removed unless committed, whatever ends the block."""
    with root.directory(parent, create=True) as dir_fd:
        item = Staged(dir_fd)
        try:
            yield item
        finally:
            if not item.file.closed:
                item.file.close()
            if item.committed is None:
                with suppress(OSError):
                    os.unlink(item.temp, dir_fd=dir_fd)


def _rename_if_absent(src_fd: int, src: str, dst_fd: int, dst: str) -> bool:
    """Atomic no-clobber rename: link + unlink. False if ``dst`` exists; OSError(EXDEV) across
    filesystems."""
    try:
        os.link(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_HARDLINKS:
            raise
        # No hard links here: check-then-rename. The window is small; nothing better is portable.
        if _lstat(dst_fd, dst) is not None:
            return False
        os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        return True
    os.unlink(src, dir_fd=src_fd)
    return True


def move_version(src: Root, relpath: str | PurePosixPath, version: Version, dst: Root,
                 dst_relpath: str | PurePosixPath, *, reserve: int = 0) -> PurePosixPath | None:
    """Move the file at ``src/relpath``, if it is still ``version``, to ``dst/dst_relpath`` (or
    ``name (n)`` there), never overwriting and never losing the source before the copy is whole.
    Returns the relpath it got in ``dst``; None if the source is no longer that version."""
    src_parent, name = split(relpath)
    dst_parent, dst_name = split(dst_relpath)
    try:
        source = src.directory(src_parent)
        src_fd = source.__enter__()
    except (FileNotFoundError, SymlinkInPath):
        return None  # the source's folder is gone, or is a symlink now: not our file any more
    try:
        if not _matches(_lstat(src_fd, name), version):
            return None
        with dst.directory(dst_parent, create=True) as dst_fd:
            while True:
                target = _free_name(dst_fd, dst_name, reserve=reserve)
                try:
                    moved = _rename_if_absent(src_fd, name, dst_fd, target)
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    target = _copy_then_delete(src_fd, name, version, dst_fd, dst_name,
                                               reserve=reserve)
                    break
                if moved:
                    _fsync(dst_fd)
                    _fsync(src_fd)
                    break
    finally:
        source.__exit__(None, None, None)
    return PurePosixPath(*dst_parent, target)


def _copy_then_delete(src_fd: int, name: str, version: Version, dst_fd: int, dst_name: str, *,
                      reserve: int) -> str:
    """The cross-filesystem move, from the checked source fd; the name it got."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | CLOEXEC, dir_fd=src_fd)
    with os.fdopen(fd, "rb") as source:
        st = os.fstat(fd)
        if not _matches(st, version):
            raise OSError(errno.EAGAIN, f"{name} changed before the copy")
        item = Staged(dst_fd)
        try:
            while chunk := source.read(_CHUNK):
                item.write(chunk)
            if item.written != version.size:
                raise OSError(errno.EIO, f"{name} changed size during the copy")
            item._finish()
            # keep mode and mtime: quarantined and archived files stay recognisable
            os.chmod(item.temp, stat.S_IMODE(st.st_mode), dir_fd=dst_fd)
            os.utime(item.temp, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_fd)
            target = item.commit_unique(dst_name, reserve=reserve)
        finally:
            if not item.file.closed:
                item.file.close()
            if item.committed is None:
                with suppress(OSError):
                    os.unlink(item.temp, dir_fd=dst_fd)
    os.unlink(name, dir_fd=src_fd)
    _fsync(src_fd)
    return target
