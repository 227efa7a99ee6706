"""``in_place = true``: outputs appear beside their inputs and are never converted again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon_harness import Dirs, files_under, once, running

from ccwatch import config as config_mod
from ccwatch.config import Config
from ccwatch.errors import ExitCode
from ccwatch.testing import TO_JPG, TO_PDF, TO_PNG, config_text, make_image, wait_for

# A png becomes a jpg, and a jpg becomes a pdf: in one folder, the jpg ccwatch writes would
# match the second rule. Only the user's own jpgs may be converted.
CHAIN = ('match = ["*.png"]\ntemplate = "to-jpg"', 'match = ["*.jpg"]\ntemplate = "to-pdf"')


def in_place_config(dirs: Dirs, emulator: Any, *, output: Path | None = None,
                    rules: tuple[str, ...] = CHAIN, folder_extra: str = "") -> Config:
    text = config_text(endpoint=emulator.base_url, state_dir=dirs.state, input_dir=dirs.input,
                       output=output or dirs.input, quarantine=dirs.quarantine, rules=rules,
                       templates=TO_JPG + TO_PDF + TO_PNG,
                       folder_extra="in_place = true\n" + folder_extra)
    return config_mod.loads(text, base_dir=dirs.root, env={"CLOUDCONVERT_API_KEY": emulator.api_key})


def test_run_once_writes_beside_the_inputs_and_never_takes_its_outputs(dirs: Dirs,
                                                                       emulator: Any) -> None:
    """a.png → a.jpg, sub/b.png → sub/b.jpg, the user's photo.jpg → photo.pdf; a.jpg and b.jpg are
    not converted to pdf, in this run or the next (the ledger remembers them)."""
    make_image(dirs.input / "a.png")
    make_image(dirs.input / "sub" / "b.png")
    make_image(dirs.input / "photo.jpg")
    cfg = in_place_config(dirs, emulator)

    assert once(cfg) == (ExitCode.OK, 3, 0)
    assert files_under(dirs.input) == ["a.jpg", "a.png", "photo.jpg", "photo.pdf", "sub/b.jpg",
                                       "sub/b.png"]
    assert emulator.count("POST", "/v2/jobs") == 3

    assert once(cfg) == (ExitCode.OK, 0, 0)  # a restart: still nothing of ours is an input
    assert emulator.count("POST", "/v2/jobs") == 3
    assert files_under(dirs.quarantine) == []


def test_daemon_stays_idle_after_converting_in_place(dirs: Dirs, emulator: Any) -> None:
    """The watcher sees every output appear; none becomes a job, and a scan notes none of them."""
    cfg = in_place_config(dirs, emulator, folder_extra="rescan_s = 1")
    with running(cfg) as daemon:
        make_image(dirs.input / "c.png")
        wait_for(lambda: (dirs.input / "c.jpg").exists(), message="c.jpg beside c.png")
        # A real jpg dropped after: once its pdf is there, c.jpg (which arrived earlier) would
        # have been picked up too, had it been taken for an input.
        make_image(dirs.input / "d.jpg")
        wait_for(lambda: (dirs.input / "d.pdf").exists(), message="d.pdf beside d.jpg")
        pipeline = daemon.runtime.pipeline
        wait_for(pipeline.idle, message="pipeline idle")
        assert pipeline.scan(cfg.folders[0]) == 0  # the rescan finds nothing to take
        assert pipeline.delivered == 2
    assert files_under(dirs.input) == ["c.jpg", "c.png", "d.jpg", "d.pdf"]
    assert emulator.count("POST", "/v2/jobs") == 2


def test_an_output_named_like_its_input_never_replaces_it(dirs: Dirs, emulator: Any) -> None:
    """png → png with on_conflict = overwrite: the output gets a free name and the original stays;
    the output, matching the same rule, is not converted again (no endless loop)."""
    original = make_image(dirs.input / "a.png").read_bytes()
    rules = ('match = ["*.png"]\ntemplate = "to-png"\non_conflict = "overwrite"',)
    cfg = in_place_config(dirs, emulator, rules=rules)

    assert once(cfg) == (ExitCode.OK, 1, 0)
    assert files_under(dirs.input) == ["a (1).png", "a.png"]
    assert (dirs.input / "a.png").read_bytes() == original
    assert once(cfg) == (ExitCode.OK, 0, 0)
    assert emulator.count("POST", "/v2/jobs") == 1


def test_output_folder_inside_the_input_is_never_watched(dirs: Dirs, emulator: Any) -> None:
    """output = input/converted: nothing under it is an input, even a file ccwatch did not write."""
    converted = dirs.input / "converted"
    converted.mkdir()
    make_image(dirs.input / "a.png")
    make_image(converted / "dropped-here.png")
    cfg = in_place_config(dirs, emulator, output=converted)

    assert once(cfg) == (ExitCode.OK, 1, 0)
    assert files_under(converted) == ["a.jpg", "dropped-here.png"]
    assert emulator.count("POST", "/v2/jobs") == 1
