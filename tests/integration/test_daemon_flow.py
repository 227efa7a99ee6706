"""The daemon end to end against the emulator: rules, delivery, quarantine, ledger, conflicts."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from daemon_harness import Dirs, MakeConfig, files_under, once, running
from PIL import Image

from ccwatch.errors import ExitCode
from ccwatch.testing import TO_JPG, make_image, wait_for


def image_format(path: Path) -> str | None:
    with Image.open(path) as img:
        img.load()
        return img.format


TWO_RULES = (
    'match = ["*.png"]\ntemplate = "to-jpg"',
    'match = ["*.bmp", "*.GIF"]\ntemplate = "to-png"',
)


def test_rules_route_files_and_leave_junk_alone(dirs: Dirs, make_config: MakeConfig,
                                                emulator: Any) -> None:
    """Two rules, two formats, a mirrored subfolder; junk and unmatched files stay put."""
    make_image(dirs.input / "a.png")
    make_image(dirs.input / "sub" / "deeper" / "b.bmp")
    make_image(dirs.input / "c.GIF", fmt="GIF")
    junk = ["~$a.docx", ".DS_Store", "x.part", "notes.txt", "._a.png"]
    for name in junk:
        (dirs.input / name).write_bytes(b"junk")

    code, delivered, failed = once(make_config(rules=TWO_RULES))

    assert (code, delivered, failed) == (ExitCode.OK, 3, 0)
    assert files_under(dirs.output) == ["a.jpg", "c.png", "sub/deeper/b.png"]
    assert image_format(dirs.output / "a.jpg") == "JPEG"
    assert image_format(dirs.output / "sub" / "deeper" / "b.png") == "PNG"
    for name in junk:
        assert (dirs.input / name).read_bytes() == b"junk"
    assert emulator.count("POST", "/v2/jobs") == 3
    assert files_under(dirs.quarantine) == []


def test_two_hundred_files_each_delivered_once(dirs: Dirs, make_config: MakeConfig,
                                               emulator: Any) -> None:
    """200 files dropped at once: 200 jobs, 200 valid outputs, nothing twice."""
    for i in range(200):
        make_image(dirs.input / f"img{i:03}.png", size=(8 + i % 5, 8))
    cfg = make_config(daemon_extra="max_in_flight = 32")

    with running(cfg):
        wait_for(lambda: len(files_under(dirs.output)) >= 200, timeout=90,
                 message="200 outputs")

    outputs = files_under(dirs.output)
    assert outputs == [f"img{i:03}.jpg" for i in range(200)]
    for name in outputs[::20]:
        assert image_format(dirs.output / name) == "JPEG"
    assert emulator.count("POST", "/v2/jobs") == 200


def test_slow_writer_uploaded_once_and_whole(dirs: Dirs, make_config: MakeConfig,
                                            emulator: Any) -> None:
    """A file written in chunks over ~5 s is uploaded once, with the md5 of the finished file."""
    source = dirs.root / "big.png"
    make_image(source, size=(600, 400))
    data = source.read_bytes()
    target = dirs.input / "slow.png"
    cfg = make_config(settle_s=1.5)

    with running(cfg):
        with target.open("wb") as fh:
            chunks = [data[i:i + len(data) // 10 + 1] for i in range(0, len(data), len(data) // 10 + 1)]
            for chunk in chunks:
                fh.write(chunk)
                fh.flush()
                threading.Event().wait(0.5)  # the writer's pace, not a wait-then-assert
        wait_for(lambda: (dirs.output / "slow.jpg").exists(), timeout=30, message="slow.jpg")

    uploads = emulator.uploads()
    assert len(uploads) == 1
    assert uploads[0].md5 == hashlib.md5(data).hexdigest()
    assert emulator.count("POST", "/v2/jobs") == 1


def test_keep_mode_restart_converts_nothing_again(dirs: Dirs, make_config: MakeConfig,
                                                  emulator: Any) -> None:
    """With originals kept, the ledger stops reconversion; a touched file is a new version."""
    for name in ("a.png", "b.png", "c.png"):
        make_image(dirs.input / name)
    cfg = make_config()
    assert once(cfg)[:2] == (ExitCode.OK, 3)
    assert emulator.count("POST", "/v2/jobs") == 3

    assert once(cfg)[:2] == (ExitCode.OK, 0)
    assert emulator.count("POST", "/v2/jobs") == 3

    st = (dirs.input / "b.png").stat()
    os.utime(dirs.input / "b.png", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert once(cfg)[:2] == (ExitCode.OK, 1)
    assert emulator.count("POST", "/v2/jobs") == 4
    # the new version replaces its own previous output, never "b (1).jpg" beside a stale b.jpg
    assert files_under(dirs.output) == ["a.jpg", "b.jpg", "c.jpg"]


def test_failed_conversion_goes_to_quarantine_with_error_file(dirs: Dirs, make_config: MakeConfig,
                                                              emulator: Any) -> None:
    """An engine error moves the original to quarantine with the root task's code and message."""
    make_image(dirs.input / "good.png")
    make_image(dirs.input / "sub" / "bad-scan.png")
    emulator.faults.task_error(glob="bad*", code="CONVERSION_FAILED", message="the engine choked")

    code, delivered, failed = once(make_config())

    assert (code, delivered, failed) == (ExitCode.FILES_FAILED, 1, 1)
    assert files_under(dirs.quarantine) == ["sub/bad-scan.png", "sub/bad-scan.png.error.json"]
    assert not (dirs.input / "sub" / "bad-scan.png").exists()
    record = json.loads((dirs.quarantine / "sub" / "bad-scan.png.error.json").read_text())
    assert record["code"] == "CONVERSION_FAILED"
    assert record["message"] == "the engine choked"
    assert record["task"] == "convert"
    assert record["file"] == "sub/bad-scan.png"
    assert record["template"] == "to-jpg"
    assert record["job_id"]
    assert set(record) >= {"folder", "rule", "http_status", "attempts", "first_seen", "failed_at",
                           "ccwatch_version"}
    assert files_under(dirs.output) == ["good.jpg"]


def test_on_conflict_rename_overwrite_skip(dirs: Dirs, make_config: MakeConfig) -> None:
    """An existing output is renamed around, replaced, or left alone, as the rule says."""
    results = {}
    for policy in ("rename", "overwrite", "skip"):
        for p in dirs.output.iterdir():
            p.unlink()
        (dirs.output / "a.jpg").write_bytes(b"existing")
        make_image(dirs.input / f"{policy}.png")
        (dirs.input / f"{policy}.png").rename(dirs.input / "a.png")
        cfg = make_config(rules=(f'match = ["*.png"]\ntemplate = "to-jpg"\non_conflict = "{policy}"',))
        assert once(cfg)[0] == ExitCode.OK
        results[policy] = {n: (dirs.output / n).read_bytes()[:8] for n in files_under(dirs.output)}
        (dirs.input / "a.png").unlink()

    assert set(results["rename"]) == {"a.jpg", "a (1).jpg"}
    assert results["rename"]["a.jpg"] == b"existing"
    assert set(results["overwrite"]) == {"a.jpg"}
    assert results["overwrite"]["a.jpg"] != b"existing"
    assert results["skip"] == {"a.jpg": b"existing"}


def test_server_filename_cannot_escape_output(dirs: Dirs, make_config: MakeConfig) -> None:
    """A convert task naming its output ``../../x.jpg`` lands inside ``output`` as ``x.jpg``."""
    evil = TO_JPG.replace('output_format = "jpg"', 'output_format = "jpg"\nfilename = "../../x.jpg"')
    make_image(dirs.input / "a.png")
    rule = 'match = ["*.png"]\ntemplate = "to-jpg"\noutput_name = "{name}"'

    code, delivered, _ = once(make_config(templates=evil, rules=(rule,)))

    assert (code, delivered) == (ExitCode.OK, 1)
    assert files_under(dirs.output) == ["x.jpg"]
    assert not (dirs.root / "x.jpg").exists()
    assert not (dirs.root.parent / "x.jpg").exists()


def test_output_name_pattern_and_delete_originals(dirs: Dirs, make_config: MakeConfig) -> None:
    """``output_name`` shapes the name; ``originals = "delete"`` removes the input only after delivery."""
    make_image(dirs.input / "photo.png")
    cfg = make_config(rules=('match = ["*.png"]\ntemplate = "to-jpg"\noutput_name = "{stem}-small.{ext}"',),
                      folder_extra='originals = "delete"')
    assert once(cfg)[:2] == (ExitCode.OK, 1)
    assert files_under(dirs.output) == ["photo-small.jpg"]
    assert not (dirs.input / "photo.png").exists()


def test_daemon_picks_up_files_dropped_while_running(dirs: Dirs, make_config: MakeConfig) -> None:
    """Events mode: a file created and a file moved in while the daemon runs are both converted."""
    outside = make_image(dirs.root / "outside.png")
    with running(make_config()):
        make_image(dirs.input / "new.png")
        outside.rename(dirs.input / "moved.png")
        wait_for(lambda: files_under(dirs.output) == ["moved.jpg", "new.jpg"], timeout=30,
                 message="both outputs")


def test_file_over_max_file_size_is_quarantined_without_a_job(dirs: Dirs, make_config: MakeConfig,
                                                              emulator: Any) -> None:
    """A file larger than ``max_file_size`` is refused before anything is sent for it."""
    make_image(dirs.input / "small.png", size=(4, 4))
    make_image(dirs.input / "huge.png", size=(400, 400), color=(1, 2, 3))
    limit = (dirs.input / "small.png").stat().st_size + 10
    assert (dirs.input / "huge.png").stat().st_size > limit

    code, delivered, failed = once(make_config(folder_extra=f"max_file_size = {limit}"))

    assert (code, delivered, failed) == (ExitCode.FILES_FAILED, 1, 1)
    assert files_under(dirs.output) == ["small.jpg"]
    record = json.loads((dirs.quarantine / "huge.png.error.json").read_text())
    assert record["code"] == "FILE_TOO_LARGE" and str(limit) in record["message"]
    assert len(emulator.jobs()) == 1


def test_originals_move_to_archive_after_delivery(dirs: Dirs, make_config: MakeConfig) -> None:
    """``originals = "move"``: the input goes to the archive at its relative path, once converted."""
    archive = dirs.root / "archive"
    archive.mkdir()
    make_image(dirs.input / "sub" / "a.png")
    cfg = make_config(folder_extra=f'originals = "move"\narchive = "{archive}"')
    assert once(cfg)[:2] == (ExitCode.OK, 1)
    assert files_under(dirs.output) == ["sub/a.jpg"]
    assert files_under(archive) == ["sub/a.png"]
    assert not (dirs.input / "sub" / "a.png").exists()


def test_max_in_flight_bounds_the_jobs_running_at_once(dirs: Dirs, make_config: MakeConfig,
                                                       emulator: Any) -> None:
    """With ``max_in_flight = 3`` never more than 3 unfinished jobs exist, and 3 are used."""
    for i in range(9):
        make_image(dirs.input / f"f{i}.png")
    emulator.faults.latency(seconds=0.4)
    code, delivered, _ = once(make_config(daemon_extra="max_in_flight = 3"))
    assert (code, delivered) == (ExitCode.OK, 9)
    assert len(emulator.jobs()) == 9
    assert emulator.most_jobs_unfinished() == 3
