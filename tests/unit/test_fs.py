"""The filesystem edge on real temporary folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ccwatch.errors import FileError
from ccwatch.fs import (
    FileStat,
    commit,
    copy_then_delete,
    inside,
    is_own_temp,
    is_taken,
    is_version,
    move_no_clobber,
    remove_temps,
    sanitize_filename,
    stat_regular,
    unique_path,
    user_name,
    writable_problem,
    write_json,
    write_stream,
)


@pytest.mark.parametrize(
    ("untrusted", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("../../x.pdf", "x.pdf"),
        ("/etc/passwd", "passwd"),
        ("a/b.pdf", "b.pdf"),
        ("..\\x.pdf", "x.pdf"),
        ("C:\\Users\\me\\doc.pdf", "doc.pdf"),
        ("Übersicht - März.pdf", "Übersicht - März.pdf"),
    ],
)
def test_sanitize_filename_keeps_only_the_base_name(untrusted: str, safe: str) -> None:
    assert sanitize_filename(untrusted) == safe


@pytest.mark.parametrize(
    "untrusted",
    ["", ".", "..", "a\x00b", "a\nb.pdf", "tab\there", "bell\x07", "del\x7f", "dir/", "../..", "  ",
     ".ccwatch-0123.tmp", "x" * 256],
)  # fmt: skip
def test_sanitize_filename_refuses_unsafe_names(untrusted: str) -> None:
    with pytest.raises(FileError) as caught:
        sanitize_filename(untrusted)
    assert caught.value.code == "UNSAFE_FILENAME"


def test_stat_regular(tmp_path: Path) -> None:
    """Regular files only: not folders, not symlinks, not missing paths."""
    f = tmp_path / "a.pdf"
    f.write_bytes(b"12345")
    os.utime(f, ns=(1_000_000_000, 2_000_000_000))
    (tmp_path / "link.pdf").symlink_to(f)
    assert stat_regular(f) == FileStat(5, 2_000_000_000)
    assert stat_regular(tmp_path / "link.pdf") is None
    assert stat_regular(tmp_path) is None
    assert stat_regular(tmp_path / "missing") is None
    assert stat_regular(f / "below-a-file") is None


def test_is_own_temp() -> None:
    assert is_own_temp(".ccwatch-abc.tmp")
    assert not is_own_temp("ccwatch-abc.tmp")
    assert not is_own_temp(".ccwatch-abc.pdf")


def test_inside_resolves_symlinks_and_dotdot(tmp_path: Path) -> None:
    root = tmp_path / "out"
    (root / "sub").mkdir(parents=True)
    (root / "escape").symlink_to(tmp_path)
    assert inside(root, root / "sub" / "x.pdf")
    assert inside(root, root)
    assert not inside(root, root / ".." / "x.pdf")
    assert not inside(root, root / "escape" / "x.pdf")


def test_write_stream_creates_folders_and_a_temp_with_all_bytes(tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b"
    temp, written = write_stream(dest, [b"hello ", b"", b"world"])
    assert temp.parent == dest
    assert is_own_temp(temp.name)
    assert written == 11
    assert temp.read_bytes() == b"hello world"


def test_write_stream_removes_its_temp_when_the_source_fails(tmp_path: Path) -> None:
    def broken_download() -> object:
        yield b"partial"
        raise ConnectionError("dropped")

    with pytest.raises(ConnectionError):
        write_stream(tmp_path, broken_download())  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_commit_without_overwrite_keeps_the_existing_file(tmp_path: Path) -> None:
    final = tmp_path / "out.pdf"
    final.write_bytes(b"old")
    temp, _ = write_stream(tmp_path, [b"new"])
    assert commit(temp, final, overwrite=False) is False
    assert final.read_bytes() == b"old"
    assert temp.read_bytes() == b"new"  # left for the caller to place elsewhere


def test_commit_with_overwrite_replaces(tmp_path: Path) -> None:
    final = tmp_path / "out.pdf"
    final.write_bytes(b"old")
    temp, _ = write_stream(tmp_path, [b"new"])
    assert commit(temp, final, overwrite=True) is True
    assert final.read_bytes() == b"new"
    assert not temp.exists()


def test_commit_to_a_free_name(tmp_path: Path) -> None:
    temp, _ = write_stream(tmp_path, [b"new"])
    assert commit(temp, tmp_path / "out.pdf", overwrite=False) is True
    assert [p.name for p in tmp_path.iterdir()] == ["out.pdf"]


def test_unique_path_counts_up(tmp_path: Path) -> None:
    target = tmp_path / "name.pdf"
    assert unique_path(target) == target
    target.touch()
    assert unique_path(target) == tmp_path / "name (1).pdf"
    (tmp_path / "name (1).pdf").touch()
    assert unique_path(target) == tmp_path / "name (2).pdf"
    (tmp_path / "README").touch()
    assert unique_path(tmp_path / "README") == tmp_path / "README (1)"


def test_unique_path_counts_dangling_links_and_taken_names(tmp_path: Path) -> None:
    """A dangling symlink holds its name (renaming onto it would replace the link), and so do the
    names other in-flight files reserved."""
    target = tmp_path / "name.pdf"
    target.symlink_to(tmp_path / "nowhere")
    assert unique_path(target) == tmp_path / "name (1).pdf"
    assert unique_path(target, taken={tmp_path / "name (1).pdf"}) == tmp_path / "name (2).pdf"
    assert is_taken(tmp_path / "free.pdf", {tmp_path / "free.pdf"})
    assert not is_taken(tmp_path / "free.pdf")


def test_is_version_compares_size_and_mtime(tmp_path: Path) -> None:
    """The same version means a regular file with the recorded size and mtime_ns."""
    path = tmp_path / "a.pdf"
    path.write_bytes(b"abc")
    st = path.stat()
    assert is_version(path, 3, st.st_mtime_ns)
    assert not is_version(path, 4, st.st_mtime_ns)
    assert not is_version(path, 3, st.st_mtime_ns + 1)
    assert not is_version(tmp_path / "gone.pdf", 3, st.st_mtime_ns)
    (tmp_path / "link.pdf").symlink_to(path)
    assert not is_version(tmp_path / "link.pdf", 3, st.st_mtime_ns)


def test_user_name_of_unknown_uid() -> None:
    """A uid with no passwd entry (containers) is shown as a number; a known one with its number."""
    assert user_name(2_000_000_123) == "uid 2000000123"
    assert user_name(0) == "root (uid 0)"


def test_move_no_clobber_renames_on_a_clash(tmp_path: Path) -> None:
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / "a.pdf").write_bytes(b"first")
    src = tmp_path / "in" / "a.pdf"
    src.parent.mkdir()
    src.write_bytes(b"second")
    final = move_no_clobber(src, tmp_path / "failed" / "a.pdf")
    assert final == tmp_path / "failed" / "a (1).pdf"
    assert final.read_bytes() == b"second"
    assert (tmp_path / "failed" / "a.pdf").read_bytes() == b"first"
    assert not src.exists()


def test_move_no_clobber_creates_missing_parents(tmp_path: Path) -> None:
    src = tmp_path / "a.pdf"
    src.write_bytes(b"x")
    final = move_no_clobber(src, tmp_path / "archive" / "2024" / "a.pdf")
    assert final.read_bytes() == b"x"
    assert not src.exists()


def test_copy_then_delete_copies_whole_keeps_mtime_and_never_clobbers(tmp_path: Path) -> None:
    """The cross-filesystem strategy, exercised directly (it works within one filesystem too)."""
    src = tmp_path / "in" / "big.bin"
    src.parent.mkdir()
    payload = os.urandom(3 * 1024 * 1024 + 7)  # several copy chunks
    src.write_bytes(payload)
    os.utime(src, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "big.bin").write_bytes(b"occupied")
    final = copy_then_delete(src, tmp_path / "out" / "big.bin")
    assert final == tmp_path / "out" / "big (1).bin"
    assert final.read_bytes() == payload
    assert final.stat().st_mtime_ns == 1_500_000_000_000_000_000
    assert (tmp_path / "out" / "big.bin").read_bytes() == b"occupied"
    assert not src.exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["big (1).bin", "big.bin"]


def test_copy_then_delete_keeps_the_source_when_the_copy_fails(tmp_path: Path) -> None:
    src = tmp_path / "a.pdf"
    src.write_bytes(b"precious")
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    with pytest.raises(OSError):
        copy_then_delete(src, blocker / "a.pdf")
    assert src.read_bytes() == b"precious"


def test_write_json_is_atomic_and_readable(tmp_path: Path) -> None:
    path = tmp_path / "q" / "a.pdf.error.json"
    path.parent.mkdir()
    path.write_text("{}")
    write_json(path, {"file": "a.pdf", "message": "Ünsupported", "attempts": 2})
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "file": "a.pdf",
        "message": "Ünsupported",
        "attempts": 2,
    }
    assert [p.name for p in path.parent.iterdir()] == ["a.pdf.error.json"]


def test_remove_temps_only_touches_own_temp_files(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / ".ccwatch-1.tmp").write_bytes(b"")
    (tmp_path / "sub" / "deeper" / ".ccwatch-2.tmp").write_bytes(b"")
    (tmp_path / "sub" / "keep.tmp").write_bytes(b"")
    (tmp_path / "sub" / ".ccwatch-dir.tmp").mkdir()
    assert remove_temps(tmp_path) == 2
    remaining = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert remaining == ["sub", "sub/.ccwatch-dir.tmp", "sub/deeper", "sub/keep.tmp"]


def test_writable_problem(tmp_path: Path) -> None:
    """A writable folder has no problem; anything else gets a sentence naming the path."""
    assert writable_problem(tmp_path) is None
    missing = writable_problem(tmp_path / "nope")
    assert missing is not None and "does not exist" in missing
    (tmp_path / "file").write_bytes(b"")
    not_folder = writable_problem(tmp_path / "file")
    assert not_folder is not None and "not a folder" in not_folder


def test_writable_problem_names_owner_and_user(tmp_path: Path) -> None:
    """The sentence says who owns the folder and who ccwatch runs as (paperless-ngx#6112).

    Root may write anywhere, so as root the check runs without the DAC override capabilities."""
    import subprocess
    import sys

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    wrap = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    code = ("import sys, pathlib\nfrom ccwatch.fs import writable_problem\n"
            "print(writable_problem(pathlib.Path(sys.argv[1])))")
    try:
        done = subprocess.run([*wrap, sys.executable, "-c", code, str(locked)], capture_output=True,
                              text=True, timeout=60, check=False)
    finally:
        locked.chmod(0o755)
    assert done.returncode == 0, done.stderr
    problem = done.stdout.strip()
    assert f"{locked} is not readable and writable by " in problem
    assert "belongs to" in problem and "dr-xr-xr-x" in problem
