"""The official Python SDK (cloudconvert==2.1.0) drives the emulator: create, upload, wait, download."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ccwatch.emulator import Emulator

REPO = Path(__file__).resolve().parents[2]
SDK_DIR = REPO / ".sdk"  # git-ignored; .ci/run installs it; its stray `tests` package lives there
SDK_SPEC = "cloudconvert==2.1.0"


@pytest.fixture(scope="session")
def sdk_path() -> Path:
    """The SDK in its own target folder, installed here with pip if CI has not done it."""
    if not (SDK_DIR / "cloudconvert" / "__init__.py").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "--target", str(SDK_DIR), SDK_SPEC], check=True, timeout=240)
    return SDK_DIR


@pytest.mark.timeout(120)
def test_official_sdk_converts_a_png_to_jpeg(emulator: Emulator, sdk_path: Path,
                                             tmp_path: Path) -> None:
    """Job.create, Task.upload (no Content-Type on the file part), Job.wait on /sync, download."""
    source = tmp_path / "photo.png"
    Image.new("RGBA", (64, 48), (10, 120, 200, 255)).save(source)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    script = Path(__file__).with_name("sdk_convert.py")
    env = {**os.environ, "PYTHONPATH": str(sdk_path)}
    done = subprocess.run(
        [sys.executable, str(script), emulator.base_url or "", emulator.api_key, str(source),
         str(out_dir)], capture_output=True, text=True, timeout=90, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["uploaded"] is True and summary["status"] == "finished"
    assert summary["saved"] == [str(out_dir / "photo.jpg")]
    with Image.open(out_dir / "photo.jpg") as img:
        assert img.format == "JPEG" and img.size == (64, 48)
    assert emulator.count("GET", "/sync/v2/jobs/*") == 1
    assert [u.filename for u in emulator.uploads()] == ["photo.png"]
