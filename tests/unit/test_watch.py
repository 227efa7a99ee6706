"""Junk and rule matching, the mount-table watch-mode choice, and scans."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from ccwatch.mounts import mount_of, needs_polling, parse_bsd_mount, parse_mountinfo
from ccwatch.watch import BUILTIN_JUNK, JUNK_DIRS, choose_mode, is_junk, match_rule, scan

P = PurePosixPath


@dataclass(frozen=True, slots=True)
class Rule:
    """Shaped like ccwatch.config.Rule as far as match_rule cares."""

    match: tuple[str, ...]


@pytest.mark.parametrize(
    "name",
    [
        ".hidden.pdf", "~$report.docx", "upload.tmp", "movie.part", "setup.exe.crdownload",
        ".notes.txt.swp", "notes.swp", "Thumbs.db", "thumbs.DB", "desktop.ini", "Desktop.INI",
        ".DS_Store", "._photo.jpg", ".syncthing.a.pdf.tmp", "~syncthing~a.pdf.tmp",
        ".ccwatch-0a1b2c.tmp", "SHOUTING.TMP",
    ],
)  # fmt: skip
def test_builtin_junk_file_names(name: str) -> None:
    assert is_junk(P(name))
    assert is_junk(P("sub/dir") / name)


def test_every_builtin_entry_is_covered_by_the_list() -> None:
    """The built-in junk list (docs/configuration.md, `ignore`) is what BUILTIN_JUNK and JUNK_DIRS hold."""
    for glob in (".*", "~$*", "*.tmp", "*.part", "*.crdownload", "*.swp", "Thumbs.db",
                 "desktop.ini", ".DS_Store", "._*", ".syncthing.*", "~syncthing~*"):  # fmt: skip
        assert glob in BUILTIN_JUNK
    assert set(JUNK_DIRS) == {"@eaDir", ".Trashes", "__MACOSX", ".stfolder"}


@pytest.mark.parametrize("folder", ["@eaDir", "@EADIR", ".Trashes", "__MACOSX", ".stfolder", ".git"])
def test_files_inside_junk_or_hidden_folders(folder: str) -> None:
    assert is_junk(P(folder) / "a.pdf")
    assert is_junk(P("deep") / folder / "x" / "a.pdf")


@pytest.mark.parametrize(
    "relpath", ["a.pdf", "sub/a.docx", "my.tmp.folder/a.pdf", "photo_.jpg", "Thumbs.db.pdf", "a~$b"]
)
def test_ordinary_files_are_not_junk(relpath: str) -> None:
    assert not is_junk(P(relpath))


def test_user_ignore_adds_to_the_builtin_list() -> None:
    """User globs match names (any component) or the relative path, case-insensitively."""
    ignore = ["*.bak", "drafts/*", "_UNPACK_*"]
    assert is_junk(P("a.BAK"), ignore)
    assert is_junk(P("sub/a.bak"), ignore)
    assert is_junk(P("drafts/a.pdf"), ignore)
    assert is_junk(P("_unpack_movie/a.mkv"), ignore)
    assert is_junk(P("Thumbs.db"), ignore)  # built-ins still apply
    assert not is_junk(P("a.pdf"), ignore)
    assert not is_junk(P("a.bak"))


def test_match_rule_first_match_wins_case_insensitive_in_subfolders() -> None:
    rules = [Rule(("*.docx", "*.odt")), Rule(("scans/*.pdf",)), Rule(("*.pdf", "*.PNG"))]
    assert match_rule(P("a.docx"), rules) == 0
    assert match_rule(P("sub/deeper/A.DOCX"), rules) == 0
    assert match_rule(P("Scans/x.PDF"), rules) == 1
    assert match_rule(P("other/x.pdf"), rules) == 2
    assert match_rule(P("img.png"), rules) == 2
    assert match_rule(P("a.txt"), rules) is None
    assert match_rule(P("a.pdf"), []) is None


def test_match_rule_name_only_glob_matches_in_subfolders() -> None:
    """A glob without '*' names a file anywhere in the tree."""
    assert match_rule(P("deep/inbox/invoice.pdf"), [Rule(("invoice.pdf",))]) == 0


MOUNTINFO = r"""
22 27 0:21 / /proc rw,relatime - proc proc rw
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
50 27 0:40 / /srv/share rw,relatime shared:5 - nfs4 server:/export rw,vers=4.2
51 50 0:41 / /srv/share/local rw,relatime - ext4 /dev/vdb rw
52 27 0:42 / /mnt/my\040drive rw - cifs //nas/drive rw
53 27 0:43 / /mnt/bind rw,nosuid,nodev - fuse /data/src rw,user_id=0
54 27 0:44 / /mnt/cloud rw - fuse.rclone remote: rw
55 27 0:45 / /mnt/c rw - 9p drvfs rw
56 27 0:46 / /mnt/ntfs rw - fuseblk /dev/sdb1 rw
57 27 0:47 / /mnt/c rw - ext4 /dev/vdc rw
"""


@pytest.fixture
def mountinfo(tmp_path: Path) -> Path:
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTINFO.lstrip())
    return path


@pytest.mark.parametrize(
    ("folder", "mode", "reason"),
    [
        ("/srv/share/inbox", "poll", "nfs4 mount at /srv/share: no change events"),
        ("/srv/share/local/inbox", "events", "ext4 mount at /srv/share/local"),
        ("/srv/shared", "events", "ext4 mount at /:"),  # a prefix of the name is not a parent
        ("/mnt/my drive/in", "poll", "cifs mount at /mnt/my drive"),
        ("/mnt/bind/in", "poll", "fuse mount at /mnt/bind"),
        ("/mnt/cloud", "poll", "fuse.rclone mount at /mnt/cloud"),
        ("/mnt/ntfs/in", "events", "fuseblk mount at /mnt/ntfs"),
        ("/mnt/c/in", "events", "ext4 mount at /mnt/c"),  # the later mount sits on top
        ("/home/me/inbox", "events", "ext4 mount at /: local filesystem"),
    ],
)
def test_choose_mode_auto_reads_the_mount_table(mountinfo: Path, folder: str, mode: str, reason: str) -> None:
    chosen, why = choose_mode(Path(folder), "auto", mountinfo=mountinfo)
    assert (chosen, reason in why) == (mode, True), why


def test_choose_mode_resolves_symlinks(mountinfo: Path, tmp_path: Path) -> None:
    """A symlink pointing into a network mount is judged by where it points."""
    link = tmp_path / "inbox"
    link.symlink_to("/srv/share/inbox")
    assert choose_mode(link, "auto", mountinfo=mountinfo)[0] == "poll"


def test_choose_mode_explicit_setting_wins(mountinfo: Path) -> None:
    assert choose_mode(Path("/srv/share"), "events", mountinfo=mountinfo) == ("events", "set in config")
    assert choose_mode(Path("/home"), "poll", mountinfo=mountinfo) == ("poll", "set in config")
    with pytest.raises(ValueError, match="inotify"):
        choose_mode(Path("/home"), "inotify", mountinfo=mountinfo)


def test_choose_mode_without_a_mount_table(tmp_path: Path) -> None:
    mode, why = choose_mode(Path("/x"), "auto", mountinfo=tmp_path / "missing")
    assert mode == "events" and "no mount table" in why


def test_parse_mountinfo_skips_garbage_lines() -> None:
    mounts = parse_mountinfo("garbage\n\n27 1 254:0 / / rw - ext4 /dev/vda rw\n1 2 3 4 5 6 -\n")
    assert [(str(m.mount_point), m.fstype) for m in mounts] == [("/", "ext4")]


def test_scan_skips_junk_symlinks_and_ignored(tmp_path: Path) -> None:
    for rel in ["a.pdf", "sub/b.docx", "sub/deep/c.png", "sub/~$b.docx", "@eaDir/a.pdf@SynoEAStream",
                ".hidden/x.pdf", "sub/.ccwatch-1.tmp", "old/d.bak", "e.BAK"]:  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "link.pdf").symlink_to(tmp_path / "a.pdf")
    (tmp_path / "linkdir").symlink_to(tmp_path / "sub")
    found = {rel: entry.path for rel, entry in scan(tmp_path, recursive=True, ignore=["*.bak"])}
    assert sorted(found) == ["a.pdf", "sub/b.docx", "sub/deep/c.png"]
    assert found["sub/deep/c.png"] == str(tmp_path / "sub" / "deep" / "c.png")
    top = [rel for rel, _ in scan(tmp_path, recursive=False, ignore=[])]
    assert sorted(top) == ["a.pdf", "e.BAK"]


def test_scan_goes_on_past_an_unreadable_folder(tmp_path: Path) -> None:
    """A folder the service user cannot read is passed over; the rest is still listed.

    Root reads everything, so as root the scan runs without the DAC override capabilities."""
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "x.pdf").write_bytes(b"x")
    (tmp_path / "a.pdf").write_bytes(b"x")
    (tmp_path / "locked").chmod(0)
    code = ("import sys, pathlib\nfrom ccwatch.watch import scan\n"
            "print([r for r, _ in scan(pathlib.Path(sys.argv[1]), recursive=True, ignore=[])])")
    try:
        found = run_unprivileged(code, str(tmp_path))
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert found == "['a.pdf']"


def test_scan_of_a_missing_folder_yields_nothing(tmp_path: Path) -> None:
    assert list(scan(tmp_path / "gone", recursive=True, ignore=[])) == []


def run_unprivileged(code: str, *args: str) -> str:
    """Run ``code`` in a child Python that obeys file modes even as root (no DAC capabilities)."""
    import subprocess
    import sys

    wrap = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    done = subprocess.run([*wrap, sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


MACOS_MOUNT = """\
/dev/disk3s1s1 on / (apfs, sealed, local, read-only, journaled)
/dev/disk3s5 on /System/Volumes/Data (apfs, local, journaled, nobrowse, protect)
//me@nas.local/Office on /Volumes/Office (smbfs, nodev, nosuid, mounted by me)
nas:/export/scans on /Volumes/My Scans (nfs, nodev, nosuid, mounted by me)
"""


@pytest.mark.parametrize(
    ("folder", "fstype", "poll"),
    [
        ("/Users/me/Downloads", "apfs", False),
        ("/Volumes/Office/inbox", "smbfs", True),
        ("/Volumes/My Scans/in", "nfs", True),  # spaces in the mount point
    ],
)
def test_macos_mount_listing_decides_like_the_linux_table(folder: str, fstype: str, poll: bool) -> None:
    """macOS has no /proc: the ``mount`` listing names SMB and NFS shares, which are polled."""
    mount = mount_of(Path(folder), parse_bsd_mount(MACOS_MOUNT))
    assert mount is not None and mount.fstype == fstype
    assert needs_polling(mount.fstype) is poll


@pytest.mark.parametrize(
    ("folder", "mode"),
    [("//nas/office/inbox", "poll"), ("C:/Users/me/Downloads", "events")],
)
def test_windows_unc_paths_are_polled(folder: str, mode: str) -> None:
    """On Windows a \\\\server\\share path is a network share: no reliable change events."""
    chosen, why = choose_mode(Path(folder), "auto", platform="win32")
    assert chosen == mode, why
