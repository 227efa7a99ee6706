"""Pick the watch mode for a folder from the mount table.

Network and FUSE filesystems deliver no change events for writes made elsewhere (another machine,
the host of a container, the directory under a bind mount), and the kernel says nothing about it:
the watcher would report "watching" and never see a file. ``auto`` therefore polls on those.
The table is /proc/self/mountinfo on Linux and the output of ``mount`` on macOS and the BSDs; on
Windows a UNC path or a mapped network drive is a share.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

MOUNTINFO = Path("/proc/self/mountinfo")
_DRIVE_REMOTE = 4  # GetDriveTypeW: a mapped network drive

# Filesystems whose content can change without the local kernel noticing.
_NO_EVENTS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "ceph", "glusterfs", "lustre",
        "gpfs", "davfs", "sshfs", "fuse",
        "9p", "virtiofs", "drvfs",  # WSL and Docker Desktop host folders
        "vboxsf", "vmhgfs", "prl_fs",  # VM shared folders
        "afpfs", "webdav", "osxfuse", "macfuse",  # macOS
    }
)  # fmt: skip


def needs_polling(fstype: str) -> bool:
    # fuseblk (ntfs-3g on a local disk) sees every write through the mount, so events work there.
    return fstype in _NO_EVENTS or fstype.startswith("fuse.")


@dataclass(frozen=True, slots=True)
class Mount:
    mount_point: PurePosixPath
    fstype: str


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash in paths as \040 \011 \012 \134
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Mounts in table order (a later entry on the same mount point sits on top of earlier ones)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue  # not a mountinfo line
        separator = fields.index("-", 6)
        if separator + 1 >= len(fields):
            continue
        mounts.append(Mount(PurePosixPath(_unescape(fields[4])), fields[separator + 1]))
    return mounts


_BSD_MOUNT_LINE = re.compile(r"^.+? on (?P<point>/.*?) \((?P<fstype>[^,)]+)")


def parse_bsd_mount(text: str) -> list[Mount]:
    """Mounts from macOS / BSD ``mount`` output: ``//u@srv/share on /Volumes/share (smbfs, …)``."""
    return [Mount(PurePosixPath(m["point"]), m["fstype"].strip())
            for line in text.splitlines() if (m := _BSD_MOUNT_LINE.match(line))]


def mount_of(path: Path, mounts: list[Mount]) -> Mount | None:
    """The mount holding ``path`` (already resolved): longest mount point that contains it."""
    target = PurePosixPath(path)
    best: Mount | None = None
    for mount in mounts:
        if target.is_relative_to(mount.mount_point) and (
            best is None or len(mount.mount_point.parts) >= len(best.mount_point.parts)
        ):
            best = mount
    return best


def choose_mode(path: Path, configured: str, *, mountinfo: Path = MOUNTINFO,
                platform: str = sys.platform) -> tuple[str, str]:
    """("events" | "poll", reason) for a folder configured ``auto``, ``events`` or ``poll``."""
    if configured in ("events", "poll"):
        return configured, "set in config"
    if configured != "auto":
        raise ValueError(f"watch mode must be auto, events or poll, not {configured!r}")
    if platform == "win32":
        return _windows_mode(path)
    if platform.startswith("linux"):
        source = str(mountinfo)
        try:
            mounts = parse_mountinfo(mountinfo.read_text(encoding="utf-8", errors="surrogateescape"))
        except OSError:
            return "events", f"no mount table at {mountinfo}: assuming a local filesystem"
    else:
        source = "`mount`"
        try:
            listing = subprocess.run(["mount"], capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return "events", "`mount` did not list the mounts: assuming a local filesystem"
        mounts = parse_bsd_mount(listing.stdout)
    mount = mount_of(path.resolve(), mounts)
    if mount is None:
        return "events", f"{path} is on no mount in {source}: assuming a local filesystem"
    where = f"{mount.fstype} mount at {mount.mount_point}"
    if needs_polling(mount.fstype):
        return "poll", f"{where}: no change events for writes made elsewhere"
    return "events", f"{where}: local filesystem with change events"


def _windows_mode(path: Path) -> tuple[str, str]:
    drive = PureWindowsPath(str(path)).drive
    if drive.startswith(("\\\\", "//")):
        return "poll", f"{drive} is a network share (UNC path): no reliable change events"
    if drive and _windows_drive_type(drive + "\\") == _DRIVE_REMOTE:
        return "poll", f"{drive} is a mapped network drive: no reliable change events"
    return "events", f"{drive or path} is a local drive with change events"


def _windows_drive_type(root: str) -> int:
    import ctypes  # only reached on Windows

    windll = getattr(ctypes, "windll", None)
    return int(windll.kernel32.GetDriveTypeW(root)) if windll is not None else 0
