"""The shipped example config runs as-is on the embedded engine: no key, no network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

from ccwatch.testing import make_image

REPO = Path(__file__).resolve().parents[2]


def test_run_once_on_the_example_config_converts_the_samples(tmp_path: Path) -> None:
    """Copy config.example.toml, drop images in ./inbox, ``run --once``: outputs, exit 0."""
    config = tmp_path / "config.example.toml"
    shutil.copy(REPO / "config.example.toml", config)
    make_image(tmp_path / "inbox" / "photo.png")
    make_image(tmp_path / "inbox" / "scans" / "page.bmp")
    make_image(tmp_path / "inbox" / "picture.jpg")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDCONVERT")}
    env["TMPDIR"] = str(temp)

    done = subprocess.run([sys.executable, "-m", "ccwatch", "run", "--once", "-c", str(config)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)

    assert done.returncode == 0, done.stderr
    # The engine's storage (copies of the inputs and outputs) went with it.
    assert list(temp.iterdir()) == []
    assert "3 converted, 0 failed" in done.stderr
    for rel, fmt in (("photo.jpg", "JPEG"), ("scans/page.jpg", "JPEG"), ("picture.pdf", None)):
        path = tmp_path / "outbox" / rel
        assert path.exists(), rel
        if fmt:
            with Image.open(path) as img:
                assert img.format == fmt
    assert (tmp_path / "outbox" / "picture.pdf").read_bytes().startswith(b"%PDF")
    assert (tmp_path / "quarantine").is_dir()


def test_run_with_a_bad_config_exits_2_and_names_the_key(tmp_path: Path) -> None:
    """A typo in a key: exit 2, and the message says which key."""
    text = (REPO / "config.example.toml").read_text().replace("max_in_flight = 16", "max_in_flite = 16")
    config = tmp_path / "ccwatch.toml"
    config.write_text(text)
    done = subprocess.run([sys.executable, "-m", "ccwatch", "run", "--once", "-c", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert "daemon.max_in_flite" in done.stderr


def test_init_example_writes_the_shipped_example_and_it_converts(tmp_path: Path) -> None:
    """``init --example DIR`` then ``run --once`` on what it wrote: the packaged copy runs offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDCONVERT")}
    target = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "ccwatch", "init", "--example", str(target)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert (target / "config.example.toml").read_bytes() == (REPO / "config.example.toml").read_bytes()
    assert (target / "templates" / "office-to-pdf.json").is_file()
    make_image(target / "inbox" / "photo.png")

    done = subprocess.run([sys.executable, "-m", "ccwatch", "run", "--once", "-c",
                           str(target / "config.example.toml")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    with Image.open(target / "outbox" / "photo.jpg") as img:
        assert img.format == "JPEG"


def test_init_example_never_overwrites(tmp_path: Path) -> None:
    """A second ``init --example`` into the same folder refuses and leaves the files alone."""
    (tmp_path / "config.example.toml").write_text("# mine\n")
    done = subprocess.run([sys.executable, "-m", "ccwatch", "init", "--example"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert "already exist" in done.stderr
    assert (tmp_path / "config.example.toml").read_text() == "# mine\n"
    assert not (tmp_path / "templates").exists()
