"""Names a user can predict: {inext}, a fixed order when two inputs want one name, a new version
replacing its own previous output, and a file changed mid-conversion dropped quietly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from proc_harness import daemon, make_setup, temp_leftovers

from ccwatch.testing import make_image, wait_for

RED, GREEN, BLUE = (220, 20, 20), (20, 200, 20), (20, 20, 220)


def colour(path: Path) -> tuple[int, int, int]:
    with Image.open(path) as image:
        pixel = image.convert("RGB").getpixel((image.width // 2, image.height // 2))
    assert isinstance(pixel, tuple)
    return pixel[0], pixel[1], pixel[2]


def near(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return all(abs(x - y) < 40 for x, y in zip(a, b, strict=True))  # JPEG is lossy


def rules(output_name: str = "{stem}.{ext}") -> tuple[str, ...]:
    return (f'match = ["*.png", "*.gif"]\ntemplate = "to-jpg"\noutput_name = "{output_name}"',)


def test_inext_keeps_inputs_of_one_stem_apart(tmp_path: Path, emulator: Any, api_key: str) -> None:
    setup = make_setup(tmp_path, emulator, rules=rules("{stem}-{inext}.{ext}"))
    make_image(setup.input / "a.png", color=RED)
    make_image(setup.input / "a.gif", color=GREEN)
    with daemon(setup, api_key) as d:
        wait_for(lambda: (setup.output / "a-png.jpg").exists() and
                 (setup.output / "a-gif.jpg").exists(), timeout=30, message="both outputs")
        assert d.terminate() == 0
    assert near(colour(setup.output / "a-png.jpg"), RED)
    assert near(colour(setup.output / "a-gif.jpg"), GREEN)


def test_colliding_names_go_in_settle_order_not_finish_order(tmp_path: Path, emulator: Any,
                                                             api_key: str) -> None:
    """a.gif sorts first, so it keeps a.jpg even though a.png's conversion finishes first."""
    setup = make_setup(tmp_path, emulator, rules=rules())
    emulator.faults.latency(1.5, glob="a.gif")
    make_image(setup.input / "a.png", color=RED)
    make_image(setup.input / "a.gif", color=GREEN)
    with daemon(setup, api_key) as d:
        for name in ("a (1).jpg", "a.jpg"):  # the log line follows the rename: wait for it
            d.wait_for_log(f"delivered {setup.output / name}")
        log = d.output()
        assert d.terminate() == 0
    first, second = (log.index(f"delivered {setup.output / n}") for n in ("a (1).jpg", "a.jpg"))
    assert first < second, "a.png finished first"
    assert near(colour(setup.output / "a.jpg"), GREEN)
    assert near(colour(setup.output / "a (1).jpg"), RED)


def test_a_new_version_replaces_its_own_output_not_others(tmp_path: Path, emulator: Any,
                                                          api_key: str) -> None:
    setup = make_setup(tmp_path, emulator, rules=rules())
    (setup.output / "other.jpg").write_bytes(b"a file that is not ours")
    make_image(setup.input / "doc.png", color=RED)
    make_image(setup.input / "other.png", color=RED)
    with daemon(setup, api_key) as d:
        wait_for(lambda: (setup.output / "doc.jpg").exists() and
                 (setup.output / "other (1).jpg").exists(), timeout=30, message="first outputs")
        make_image(setup.input / "doc.png", color=BLUE, size=(40, 30))
        wait_for(lambda: near(colour(setup.output / "doc.jpg"), BLUE), timeout=30,
                 message="doc.jpg replaced by the new version's output")
        assert d.terminate() == 0
    assert sorted(p.name for p in setup.output.iterdir()) == ["doc.jpg", "other (1).jpg",
                                                             "other.jpg"]
    assert (setup.output / "other.jpg").read_bytes() == b"a file that is not ours"
    assert temp_leftovers(setup.output) == []


def test_a_file_changed_during_conversion_is_dropped_quietly(tmp_path: Path, emulator: Any,
                                                             api_key: str) -> None:
    setup = make_setup(tmp_path, emulator, rules=rules())
    emulator.faults.latency(2.0, glob="grow.png")
    make_image(setup.input / "grow.png", color=RED)
    with daemon(setup, api_key) as d:
        d.wait_for_log("uploaded")
        make_image(setup.input / "grow.png", color=BLUE, size=(48, 36))
        d.wait_for_log("changed while being converted; its outdated job was deleted")
        wait_for(lambda: (setup.output / "grow.jpg").exists(), timeout=30, message="grow.jpg")
        log = d.output()
        assert d.terminate() == 0
    assert near(colour(setup.output / "grow.jpg"), BLUE)
    assert sorted(p.name for p in setup.output.iterdir()) == ["grow.jpg"]
    assert "ERROR" not in log and "WARNING" not in log
    assert log.count("outdated job was deleted") == 1
    assert emulator.count("DELETE", "/v2/jobs/*") == 1
    assert not any(setup.quarantine.iterdir())
