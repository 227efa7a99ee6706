"""Pick the watch mode for a folder from the mount table.

Network and FUSE filesystems deliver no change events for writes made elsewhere (another machine,
the host of a container, the directory under a bind mount), and the kernel says nothing about it:
the watcher would report "watching" and never see a file. ``auto`` therefore polls on those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MOUNTINFO = Path("/proc/self/mountinfo")

# Filesystems whose content can change without the local kernel noticing.
_NO_EVENTS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "ceph", "glusterfs", "lustre",
        "gpfs", "davfs", "sshfs", "fuse",
        "9p", "virtiofs", "drvfs",  # WSL and Docker Desktop host folders
        "vboxsf", "vmhgfs", "prl_fs",  # VM shared folders
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


def choose_mode(path: Path, configured: str, *, mountinfo: Path = MOUNTINFO) -> tuple[str, str]:
    """("events" | "poll", reason) for a folder configured ``auto``, ``events`` or ``poll``."""
    if configured in ("events", "poll"):
        return configured, "set in config"
    if configured != "auto":
        raise ValueError(f"watch mode must be auto, events or poll, not {configured!r}")
    try:
        mounts = parse_mountinfo(mountinfo.read_text(encoding="utf-8", errors="surrogateescape"))
    except OSError:
        return "events", f"no mount table at {mountinfo}: assuming a local filesystem"
    mount = mount_of(path.resolve(), mounts)
    if mount is None:
        return "events", f"{path} is on no mount in {mountinfo}: assuming a local filesystem"
    where = f"{mount.fstype} mount at {mount.mount_point}"
    if needs_polling(mount.fstype):
        return "poll", f"{where}: no change events for writes made elsewhere"
    return "events", f"{where}: local filesystem with change events"
