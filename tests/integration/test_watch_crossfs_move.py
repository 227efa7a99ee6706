"""Moves between two real filesystems (tmpfs /dev/shm and the disk under pytest's tmp_path).

``fs.rooted.move_version`` copies, fsyncs, commits without clobbering, and only then deletes the
source when a rename fails with EXDEV.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccwatch.fs import FileStat, is_own_temp, rooted
from ccwatch.fs.roots import Root

SHM = Path("/dev/shm")


def _move(src_root: Path, src: Path, dst_root: Path, dst: Path) -> Path | None:
    st = src.stat()
    moved = rooted.move_version(Root(src_root), src.relative_to(src_root).as_posix(),
                                FileStat(st.st_size, st.st_mtime_ns), Root(dst_root),
                                dst.relative_to(dst_root).as_posix())
    return None if moved is None else dst_root / moved


@pytest.fixture
def other_fs(tmp_path: Path) -> Iterator[Path]:
    """A folder on a different filesystem from ``tmp_path``."""
    if not SHM.is_dir():
        _unavailable("no /dev/shm here: no second filesystem to move across")
    with tempfile.TemporaryDirectory(dir=SHM) as folder:
        if os.stat(folder).st_dev == os.stat(tmp_path).st_dev:
            _unavailable("/dev/shm and tmp_path share a filesystem here")
        yield Path(folder)


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):  # CI machines have a separate /dev/shm: there this is a failure
        pytest.fail(why)
    pytest.skip(why)


def test_move_across_filesystems_copies_then_deletes(other_fs: Path, tmp_path: Path) -> None:
    src = other_fs / "in" / "scan.pdf"
    src.parent.mkdir()
    payload = os.urandom(2 * 1024 * 1024 + 3)
    src.write_bytes(payload)
    os.utime(src, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    dst = tmp_path / "failed" / "2024" / "scan.pdf"
    final = _move(other_fs, src, tmp_path, dst)
    assert final == dst
    assert final.read_bytes() == payload
    assert final.stat().st_mtime_ns == 1_600_000_000_000_000_000
    assert not src.exists()
    assert not any(is_own_temp(p.name) for p in dst.parent.iterdir())


def test_move_across_filesystems_never_clobbers(other_fs: Path, tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_bytes(b"already here")
    (tmp_path / "a (1).pdf").write_bytes(b"also here")
    src = other_fs / "a.pdf"
    src.write_bytes(b"incoming")
    final = _move(other_fs, src, tmp_path, tmp_path / "a.pdf")
    assert final == tmp_path / "a (2).pdf"
    assert final.read_bytes() == b"incoming"
    assert (tmp_path / "a.pdf").read_bytes() == b"already here"
    assert (tmp_path / "a (1).pdf").read_bytes() == b"also here"
    assert not src.exists()


def test_failed_cross_filesystem_move_keeps_the_source(other_fs: Path, tmp_path: Path) -> None:
    """The target folder cannot be created (a file is in the way): the original stays whole."""
    src = other_fs / "a.pdf"
    src.write_bytes(b"precious")
    (tmp_path / "blocked").write_bytes(b"")
    with pytest.raises(OSError):
        _move(other_fs, src, tmp_path, tmp_path / "blocked" / "sub" / "a.pdf")
    assert src.read_bytes() == b"precious"
