"""Jobs that are provably ours: installations sharing one API key never adopt each other's jobs.

Each installation (its own state dir, so its own ledger and installation id) numbers its files from 1,
so without the installation id in the tag their first jobs would carry the same tag. Creates fail
(before or after the server made the job), which sends each file through the look-up-by-tag path. The
inputs of each installation have their own pixel sizes: an output converted from the wrong input
shows it. Finished jobs stay listed on the emulator, as yesterday's jobs may on a real account.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from proc_harness import Setup, daemon, make_setup

from ccwatch.testing import make_image

NAMES = ("a.png", "b.png", "c.png")


def _inputs(setup: Setup, width: int) -> dict[str, tuple[int, int]]:
    sizes = {}
    for i, name in enumerate(NAMES):
        size = (width + i, 10 + i)
        make_image(setup.input / name, size=size)
        sizes[name.replace(".png", ".jpg")] = size
    return sizes


def _run_once(setup: Setup, api_key: str) -> None:
    with daemon(setup, api_key, once=True) as d:
        assert d.proc.wait(60) == 0, d.output()


def _output_sizes(setup: Setup) -> dict[str, tuple[int, int]]:
    sizes = {}
    for p in setup.output.iterdir():
        with Image.open(p) as img:
            sizes[p.name] = img.size
    return sizes


def _fail_creates(emulator: Any, after_work: bool) -> None:
    emulator.faults.clear()
    emulator.faults.http_error("POST", "/v2/jobs", status=500, times=len(NAMES), after_work=after_work)


@pytest.mark.parametrize("after_work", [True, False], ids=["after-work", "before-work"])
def test_two_installations_on_one_key_each_get_their_own_outputs(
        tmp_path: Path, emulator: Any, api_key: str, after_work: bool) -> None:
    first = make_setup(tmp_path / "first", emulator)
    second = make_setup(tmp_path / "second", emulator)
    first_sizes = _inputs(first, 20)
    second_sizes = _inputs(second, 40)

    _fail_creates(emulator, after_work)
    _run_once(first, api_key)
    _fail_creates(emulator, after_work)
    _run_once(second, api_key)

    assert _output_sizes(first) == first_sizes
    assert _output_sizes(second) == second_sizes, "an output came from the other installation's job"
    jobs = emulator.jobs()
    assert len(jobs) == 2 * len(NAMES), "a job was created twice or adopted from the other side"
    assert len({j["tag"] for j in jobs}) == 2 * len(NAMES)
    assert len(emulator.uploads()) == 2 * len(NAMES)


def test_a_wiped_state_dir_never_adopts_yesterdays_job(tmp_path: Path, emulator: Any,
                                                       api_key: str) -> None:
    setup = make_setup(tmp_path, emulator)
    _inputs(setup, 20)
    _run_once(setup, api_key)

    # Start afresh: a new ledger, new files under the same names, yesterday's jobs still listed.
    shutil.rmtree(setup.state)
    setup.state.mkdir()
    for p in setup.output.iterdir():
        p.unlink()
    today = _inputs(setup, 60)
    _fail_creates(emulator, after_work=False)
    _run_once(setup, api_key)

    assert _output_sizes(setup) == today, "today's file got yesterday's conversion"
    assert len(emulator.jobs()) == 2 * len(NAMES)
