"""The filesystem edge on real temporary folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ccwatch.errors import FileError
from ccwatch.fs import (
    FileStat,
    inside,
    is_own_temp,
    sanitize_filename,
    stat_regular,
    user_name,
    writable_problem,
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


def test_user_name_of_unknown_uid() -> None:
    """A uid with no passwd entry (containers) is shown as a number; a known one with its number."""
    assert user_name(2_000_000_123) == "uid 2000000123"
    assert user_name(0) == "root (uid 0)"


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
