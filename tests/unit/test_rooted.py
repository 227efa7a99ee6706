"""Operations inside a root (fs.roots, fs.rooted) on real temporary folders and symlinks."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest

from ccwatch.errors import FolderUnavailable
from ccwatch.fs import NAME_MAX, FileStat, fit_name, is_own_temp, name_bytes, name_problem, numbered, rooted
from ccwatch.fs.roots import Root, Roots, SymlinkInPath


def _version(path: Path) -> FileStat:
    st = path.stat()
    return FileStat(st.st_size, st.st_mtime_ns)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Root, Path]:
    """A root ``in`` with ``in/sub/a.txt``, and ``outside/a.txt`` (the same name, elsewhere)."""
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "sub" / "a.txt").write_bytes(b"inside")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "a.txt").write_bytes(b"secret")
    return Root(tmp_path / "in"), tmp_path


def _swap_for_link(tmp_path: Path) -> None:
    """``in/sub`` becomes a symlink to ``outside``."""
    os.rename(tmp_path / "in" / "sub", tmp_path / "sub-moved")
    os.symlink(tmp_path / "outside", tmp_path / "in" / "sub")


def test_a_symlinked_folder_is_never_followed(tree: tuple[Root, Path]) -> None:
    root, tmp_path = tree
    version = _version(tmp_path / "in" / "sub" / "a.txt")
    assert rooted.stat_file(root, "sub/a.txt") == version
    _swap_for_link(tmp_path)
    secret = _version(tmp_path / "outside" / "a.txt")
    assert rooted.stat_file(root, "sub/a.txt") is None
    with rooted.open_version(root, "sub/a.txt", secret) as fh:
        assert fh is None
    assert not rooted.unlink_version(root, "sub/a.txt", secret)
    with pytest.raises(SymlinkInPath):
        rooted.exists(root, "sub/a.txt")
    with pytest.raises(SymlinkInPath), rooted.staged(root, ("sub",)):
        pass
    assert sorted(os.listdir(tmp_path / "outside")) == ["a.txt"]
    assert (tmp_path / "outside" / "a.txt").read_bytes() == b"secret"


def test_a_symlinked_file_is_not_opened_or_deleted(tree: tuple[Root, Path]) -> None:
    root, tmp_path = tree
    target = tmp_path / "outside" / "a.txt"
    os.symlink(target, tmp_path / "in" / "link.txt")
    with rooted.open_version(root, "link.txt", _version(target)) as fh:
        assert fh is None
    assert not rooted.unlink_version(root, "link.txt", _version(target))
    assert target.exists()


def test_open_and_unlink_act_only_on_the_recorded_version(tree: tuple[Root, Path]) -> None:
    root, tmp_path = tree
    path = tmp_path / "in" / "sub" / "a.txt"
    version = _version(path)
    stale = FileStat(version.size + 1, version.mtime_ns)
    with rooted.open_version(root, "sub/a.txt", stale) as fh:
        assert fh is None
    assert not rooted.unlink_version(root, "sub/a.txt", stale)
    with rooted.open_version(root, "sub/a.txt", version) as fh:
        assert fh is not None and fh.read() == b"inside"
        assert rooted.unchanged(fh, root, "sub/a.txt", version)
        os.rename(path, tmp_path / "in" / "renamed.txt")  # renamed away: still the same file
        assert rooted.unchanged(fh, root, "sub/a.txt", version)
        (tmp_path / "in" / "sub" / "a.txt").write_bytes(b"saved over")  # another file there now
        assert not rooted.unchanged(fh, root, "sub/a.txt", version)
    assert rooted.unlink_version(root, "renamed.txt", version)
    assert not (tmp_path / "in" / "renamed.txt").exists()


def test_staged_commit_never_clobbers_unless_asked_and_leaves_no_temp(tmp_path: Path) -> None:
    root = Root(tmp_path)
    (tmp_path / "out.pdf").write_bytes(b"old")
    with rooted.staged(root, ()) as item:
        item.write(b"new")
        assert item.commit("out.pdf", overwrite=False) is False
    assert (tmp_path / "out.pdf").read_bytes() == b"old"
    with rooted.staged(root, ("deep", "er")) as item:
        item.write(b"new")
        assert item.commit_unique("out.pdf") == "out.pdf"
    with rooted.staged(root, ()) as item:
        item.write(b"newer")
        assert item.commit("out.pdf", overwrite=True)
    assert (tmp_path / "out.pdf").read_bytes() == b"newer"
    assert (tmp_path / "deep" / "er" / "out.pdf").read_bytes() == b"new"
    with pytest.raises(ConnectionError), rooted.staged(root, ()) as item:
        item.write(b"half")
        raise ConnectionError("dropped")
    assert not [p for p in tmp_path.rglob("*") if is_own_temp(p.name)]


def test_move_version_numbers_clashes_keeps_mtime_and_creates_folders(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "failed" / "2024").mkdir(parents=True)
    (tmp_path / "failed" / "2024" / "a.pdf").write_bytes(b"first")
    src = tmp_path / "in" / "a.pdf"
    src.write_bytes(b"second")
    os.utime(src, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    roots = Roots()
    moved = rooted.move_version(roots(tmp_path / "in"), "a.pdf", _version(src),
                                roots(tmp_path / "failed"), "2024/a.pdf")
    assert moved == PurePosixPath("2024/a (1).pdf")
    final = tmp_path / "failed" / "2024" / "a (1).pdf"
    assert final.read_bytes() == b"second"
    assert final.stat().st_mtime_ns == 1_500_000_000_000_000_000
    assert (tmp_path / "failed" / "2024" / "a.pdf").read_bytes() == b"first"
    assert not src.exists()
    assert rooted.move_version(roots(tmp_path / "in"), "a.pdf", _version(final),
                               roots(tmp_path / "failed"), "a.pdf") is None  # gone: nothing


def test_move_version_keeps_the_error_file_name_within_the_limit(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    name = "L" * (NAME_MAX - 4) + ".png"
    (tmp_path / "in" / name).write_bytes(b"x")
    (tmp_path / "q").mkdir()
    moved = rooted.move_version(Root(tmp_path / "in"), name, _version(tmp_path / "in" / name),
                                Root(tmp_path / "q"), name, reserve=len(".error.json"))
    assert moved is not None and moved.suffix == ".png"
    assert name_bytes(moved.name + ".error.json") <= NAME_MAX


def test_a_missing_root_is_unavailable_and_never_created(tmp_path: Path) -> None:
    problems: list[str | None] = []
    roots = Roots(on_change=lambda _path, problem: problems.append(problem))
    root = roots(tmp_path / "share")
    with pytest.raises(FolderUnavailable), rooted.staged(root, ("sub",)):
        pass
    with pytest.raises(FolderUnavailable):
        root.check()
    assert not (tmp_path / "share").exists()
    assert roots.unavailable() == {str(tmp_path / "share"): "it does not exist"}
    (tmp_path / "share").mkdir()
    root.check()
    assert roots.unavailable() == {}
    assert problems == ["it does not exist", None]  # once when it went, once when it came


def test_names_fit_and_number() -> None:
    assert numbered("a.pdf", 0) == "a.pdf" and numbered("a.pdf", 2) == "a (2).pdf"
    long = "é" * 127 + ".pdf"  # 258 bytes
    fitted = fit_name(long)
    assert name_bytes(fitted) <= NAME_MAX and fitted.endswith(".pdf")
    assert fit_name(numbered("x" * 251 + ".pdf", 1)).endswith(" (1).pdf")
    assert name_problem("ok/name.png") is None
    assert name_problem("bad\nname.png") and name_problem(os.fsdecode(b"bad\xff.png"))


def test_remove_temps_only_touches_own_temp_files_and_follows_no_symlink(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "sub" / "deeper").mkdir(parents=True)
    (out / ".ccwatch-1.tmp").write_bytes(b"")
    (out / "sub" / "deeper" / ".ccwatch-2.tmp").write_bytes(b"")
    (out / "sub" / "keep.tmp").write_bytes(b"")
    (out / "sub" / ".ccwatch-dir.tmp").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / ".ccwatch-3.tmp").write_bytes(b"")
    os.symlink(tmp_path / "elsewhere", out / "link")
    assert rooted.remove_temps(Root(out)) == 2
    remaining = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert remaining == ["link", "sub", "sub/.ccwatch-dir.tmp", "sub/deeper", "sub/keep.tmp"]
    assert (tmp_path / "elsewhere" / ".ccwatch-3.tmp").exists()


@pytest.mark.parametrize("relpath", ["a.png", "sub/a.png", "sub//deep/./a.png", "./a.png",
                                     "a/b/", PurePosixPath("x/y.png"), "é/ü .png"])
def test_split_agrees_with_pathlib(relpath: str | PurePosixPath) -> None:
    parts = PurePosixPath(relpath).parts
    assert rooted.split(relpath) == (parts[:-1], parts[-1])


@pytest.mark.parametrize("relpath", ["", ".", "/etc/passwd", "../a", "a/../../b", "//a", "a/.."])
def test_split_refuses_what_escapes_or_names_nothing(relpath: str) -> None:
    with pytest.raises(ValueError):
        rooted.split(relpath)
