"""The filesystem edge: stat, names (safe, fitting, numbered on a clash), own temp names, and
whether a folder is usable.

Every file operation on the configured folders goes through :mod:`ccwatch.fs.rooted` (inside the
root, no symlink followed, files written as ``.ccwatch-<random>.tmp``, fsynced, then renamed, so
a reader or a crash never sees a half-written output under its final name); the configured
folders themselves are :mod:`ccwatch.fs.roots`.
"""

from __future__ import annotations

import errno
import getpass
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ccwatch.errors import FileError

TEMP_PREFIX = ".ccwatch-"
TEMP_SUFFIX = ".tmp"
NAME_MAX = 255  # bytes, the limit of every filesystem we expect to write to

# errnos meaning "no hard links on this filesystem" (FAT, some FUSE/SMB): fall back to rename
_NO_HARDLINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


@dataclass(frozen=True, slots=True)
class FileStat:
    size: int
    mtime_ns: int


def stat_regular(path: Path) -> FileStat | None:
    """Size and mtime of a regular file; None if missing, not a regular file, or a symlink."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return FileStat(st.st_size, st.st_mtime_ns)


def is_own_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1


def name_problem(relpath: str) -> str | None:
    """Why a file with this relative path cannot go through CloudConvert and back, or None.

    The API takes names as JSON text (UTF-8), and an output name must be safe to write; a name
    the OS allowed but that fails these is refused before any job is created."""
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not valid UTF-8, which CloudConvert cannot take: rename it"
    if _CONTROL.search(relpath):
        return "its name contains control characters (a newline, a tab…): rename it"
    return None


def sanitize_filename(name: str) -> str:
    """Reduce an untrusted (server-supplied) file name to a safe base name, or raise FileError."""

    def refuse(why: str) -> FileError:
        return FileError(f"unsafe file name {name!r}: {why}", code="UNSAFE_FILENAME")

    if _CONTROL.search(name):
        raise refuse("control character")
    # Windows separators count too: a name like "..\\x.pdf" is a path on the server's side.
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if base.strip() in ("", ".", ".."):
        raise refuse("no file name left")
    if is_own_temp(base):
        raise refuse("clashes with ccwatch's temporary names")
    if name_bytes(base) > NAME_MAX:
        raise refuse(f"longer than {NAME_MAX} bytes")
    return base


def inside(root: Path, path: Path) -> bool:
    """True if ``path`` (symlinks resolved) is ``root`` or lies beneath it."""
    return path.resolve().is_relative_to(root.resolve())


def numbered(name: str, n: int) -> str:
    """``name`` for 0, else ``stem (n).ext``: the name a clash gets."""
    if n == 0:
        return name
    path = PurePosixPath(name)
    return f"{path.stem} ({n}){path.suffix}"


def name_bytes(name: str) -> int:
    return len(os.fsencode(name))


def fit_name(name: str, *, reserve: int = 0) -> str:
    """``name`` shortened (its stem, by whole characters) so that it and ``reserve`` more bytes
    fit the filesystem's name limit: ``x (1).jpg`` or ``x.jpg.error.json`` for a 255-byte ``x``."""
    limit = NAME_MAX - reserve
    if name_bytes(name) <= limit:
        return name
    path = PurePosixPath(name)
    suffix = path.suffix if name_bytes(path.suffix) <= limit // 4 else ""
    stem = name[: len(name) - len(suffix)]
    number = re.search(r" \(\d+\)$", stem)  # keep the clash number: it is what makes it unique
    tail = number.group(0) if number else ""
    stem = stem[: len(stem) - len(tail)]
    while stem and name_bytes(stem + tail + suffix) > limit:
        stem = stem[:-1]
    return stem + tail + suffix


def user_name(uid: int) -> str:
    """``name (uid N)`` for messages; ``uid N`` without a passwd entry or without ``pwd`` (Windows)."""
    try:
        import pwd  # POSIX only
    except ImportError:
        return f"uid {uid}"
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:  # containers often run as a uid with no passwd entry
        return f"uid {uid}"


def current_user() -> str:
    """The user ccwatch runs as, for messages about permissions."""
    geteuid = getattr(os, "geteuid", None)
    if geteuid is None:  # Windows: no uids; the login name is what its ACLs talk about
        return getpass.getuser()
    return user_name(geteuid())


def _read_only_fs(folder: Path) -> bool:
    statvfs = getattr(os, "statvfs", None)  # not on Windows, where os.access sees read-only shares
    return statvfs is not None and bool(statvfs(folder).f_flag & os.ST_RDONLY)


def writable_problem(folder: Path) -> str | None:
    """None if ``folder`` is a directory this process can list and create files in, else a
    sentence saying why not, naming the folder's owner and the user ccwatch runs as."""
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        return f"{folder} does not exist"
    except OSError as exc:
        return f"{folder} cannot be examined: {exc.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{folder} is not a folder"
    me = current_user()
    if _read_only_fs(folder):
        return f"{folder} is on a read-only filesystem (ccwatch runs as {me})"
    effective = os.access in os.supports_effective_ids
    if os.access(folder, os.R_OK | os.W_OK | os.X_OK, effective_ids=effective):
        return None
    return (
        f"{folder} is not readable and writable by {me}: it belongs to {user_name(st.st_uid)} "
        f"with mode {stat.filemode(st.st_mode)}"
    )
