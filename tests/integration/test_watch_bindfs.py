"""A FUSE mirror (bindfs) behaves like a network share: no events for writes made underneath.

The mount fixture lives in tests/system/conftest.py (shared with the daemon's system tests); it is
loaded here by path because conftest fixtures are only visible below their own folder.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

from ccwatch.fs import writable_problem
from ccwatch.watch import FolderWatcher, choose_mode


def _load_system_conftest() -> object:
    path = Path(__file__).resolve().parents[1] / "system" / "conftest.py"
    spec = importlib.util.spec_from_file_location("ccwatch_system_fixtures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_system = _load_system_conftest()
bindfs_mount = _system.bindfs_mount  # type: ignore[attr-defined]  # the fixture, by its own name
bindfs_mirror = _system.bindfs_mirror  # type: ignore[attr-defined]


def test_auto_mode_polls_on_a_fuse_mount(bindfs_mount: tuple[Path, Path]) -> None:
    _, mount_dir = bindfs_mount
    mode, reason = choose_mode(mount_dir, "auto")
    assert mode == "poll"
    assert reason.startswith("fuse") and str(mount_dir) in reason


def test_poll_watcher_on_the_mount_sees_a_file_written_underneath(
    bindfs_mount: tuple[Path, Path],
) -> None:
    underlying, mount_dir = bindfs_mount
    seen = threading.Event()
    reported: list[Path] = []

    def on_path(path: Path) -> None:
        reported.append(path)
        seen.set()

    watcher = FolderWatcher(mount_dir, mode="poll", recursive=True, poll_s=0.05, on_path=on_path)
    watcher.start()
    try:
        (underlying / "sub").mkdir()
        (underlying / "sub" / "from-the-nas.pdf").write_bytes(b"%PDF-1.7")
        assert seen.wait(10.0), "the poller never reported the file"
    finally:
        watcher.stop()
    assert set(reported) == {mount_dir / "sub" / "from-the-nas.pdf"}


def test_writable_problem_on_a_read_only_mount(tmp_path: Path) -> None:
    """A read-only mount (e.g. a systemd unit missing ReadWritePaths=) is named as such, even as root."""
    (tmp_path / "src").mkdir()
    with bindfs_mirror(tmp_path / "src", tmp_path / "ro", "-r") as mount_dir:
        problem = writable_problem(mount_dir)
    assert problem is not None and "read-only" in problem and str(mount_dir) in problem
