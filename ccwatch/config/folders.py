"""The filesystem checks a config must pass before the daemon starts (``config.check_folders``).

- No output, quarantine or archive lies inside (or is) any folder's watched input: the daemon
  would convert its own results forever. Paths are compared as written and resolved (symlinks).
  The one exception is a folder's output inside its own input with ``in_place = true``.
- Every folder exists and is readable and writable by the user ccwatch runs as; a failure names
  the folder's owner and that user, the usual cause on shares and under systemd.
- Folders the TOML gave as relative paths are created when missing; absolute ones never are (an
  absent absolute path is usually an unmounted share, and creating it would hide that).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ccwatch import fs
from ccwatch.errors import ConfigError

if TYPE_CHECKING:
    from ccwatch.config.model import Config

_DESTINATIONS = ("output", "quarantine", "archive")


def verify_folders(config: Config) -> None:
    """Raise ConfigError for the first folder problem; create missing relative folders."""
    check_nesting(config)
    for i, folder in enumerate(config.folders):
        for name in ("input", *_DESTINATIONS):
            path: Path | None = getattr(folder, name)
            if path is not None:
                ensure_folder(path, key=f"folders[{i}].{name}", create=path in config.auto_create)


def check_nesting(config: Config) -> None:
    """Nothing ccwatch writes may land in a watched input."""
    folders = config.folders
    for i, folder in enumerate(folders):
        for name in _DESTINATIONS:
            path: Path | None = getattr(folder, name)
            if path is None:
                continue
            for j, other in enumerate(folders):
                if name == "output" and j == i and folder.in_place:
                    continue  # in place: its own outputs are recognised and never taken as inputs
                if is_within(path, other.input):
                    hint = ("; to write outputs beside their inputs, set in_place = true"
                            if name == "output" and j == i else "")
                    raise ConfigError(f"folders[{i}].{name}", f"{path} is inside the watched input "
                                      f"of folders[{j}] ({other.input}): its files would be "
                                      f"converted again{hint}")
        for j, other in enumerate(folders):
            # Two folders watching the same files would convert each one twice.
            if j != i and is_within(folder.input, other.input) and (
                    other.recursive or folder.input == other.input):
                raise ConfigError(f"folders[{i}].input", f"{folder.input} is inside the watched "
                                  f"input of folders[{j}] ({other.input})")
    state_dir = config.daemon.state_dir
    for j, other in enumerate(folders):
        if state_dir is not None and is_within(state_dir, other.input):
            raise ConfigError("daemon.state_dir", f"{state_dir} is inside the watched input of "
                              f"folders[{j}] ({other.input})")


def is_within(path: Path, root: Path) -> bool:
    """``path`` is ``root`` or below it, as written or after resolving symlinks."""
    for candidate, base in ((path, root), (path.resolve(), root.resolve())):
        if candidate == base or base in candidate.parents:
            return True
    return False


def ensure_folder(path: Path, *, key: str, create: bool) -> None:
    """``path`` is an existing, readable and writable folder (created first if ``create``)."""
    if not path.exists():
        if not create:
            raise ConfigError(key, f"{path} does not exist (absolute paths are never created: "
                              f"create or mount it first)")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(key, f"cannot create {path}: {exc.strerror or exc}") from exc
    if not path.is_dir():
        raise ConfigError(key, f"{path} is not a folder")
    problem = fs.writable_problem(path)
    if problem:
        raise ConfigError(key, problem)
