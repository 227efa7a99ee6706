"""Conversion engines: every Pillow pair, PATH tools when present, tool detection."""

from __future__ import annotations

import base64
import io
import math
import os
import struct
import wave
from pathlib import Path
from typing import Any

import pytest
from emulator_helpers import png_bytes, poll
from PIL import Image

from ccwatch.emulator import Emulator
from ccwatch.emulator.engines import PIL_IN, PIL_SAVE, Engines
from ccwatch.emulator.external import detect_tools, probe_tools

TOOLS = {tool.engine for tool in detect_tools()}
PILLOW_NAMES = {"jpg": "JPEG", "png": "PNG", "gif": "GIF", "bmp": "BMP", "tiff": "TIFF",
                "webp": "WEBP", "pdf": "PDF"}


def run_job(emu: Emulator, filename: str, content: bytes, output_format: str) -> dict[str, Any]:
    tasks = {"in": {"operation": "import/base64", "file": base64.b64encode(content).decode(),
                    "filename": filename},
             "convert": {"operation": "convert", "input": "in", "output_format": output_format}}
    job_id = emu.create_job({"tasks": tasks})["id"]

    def ended() -> dict[str, Any] | None:
        return next((j for j in emu.jobs() if j["id"] == job_id
                     and j["status"] in ("finished", "error")), None)

    job: dict[str, Any] = poll(ended, timeout_s=60, what="the job to end")
    return job


@pytest.mark.parametrize(("src", "dst"), [(s, d) for s in PIL_IN for d in PIL_SAVE if s != d])
def test_every_pillow_pair_writes_the_target_format(tmp_path: Path, src: str, dst: str) -> None:
    """Each image format converts to each other one and to PDF; alpha survives where it can."""
    source = tmp_path / f"in.{src}"
    with Image.open(io.BytesIO(png_bytes((12, 9), (0, 100, 200, 120)))) as img:
        (img.convert("RGB") if src == "jpg" else img).save(source, PILLOW_NAMES[src])
    target = tmp_path / f"out.{dst}"
    conversion = Engines(tools=()).convert(source, src, dst, target, timeout_s=30)
    assert conversion.engine == "pillow"
    if dst == "pdf":
        assert target.read_bytes().startswith(b"%PDF")
        return
    with Image.open(target) as img:
        assert img.format == PILLOW_NAMES[dst] and img.size == (12, 9)


def wav_bytes() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 5))) for i in range(8000)))
    return buf.getvalue()


SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10">'
       b'<rect width="20" height="10" fill="red"/></svg>')


@pytest.mark.parametrize(("engine", "filename", "content", "output_format", "magic"), [
    ("libreoffice", "note.txt", b"hello from the emulator\n", "pdf", b"%PDF"),
    ("ffmpeg", "tone.wav", wav_bytes(), "flac", b"fLaC"),
    ("imagemagick", "shape.svg", SVG, "png", b"\x89PNG"),
])
def test_path_tools_convert_when_present(engine: str, filename: str, content: bytes,
                                         output_format: str, magic: bytes) -> None:
    """LibreOffice, ffmpeg and ImageMagick are used when found on PATH (skipped elsewhere; CI installs
    them, so there a missing tool fails)."""
    if engine not in TOOLS:
        if os.environ.get("CI"):
            pytest.fail(f"{engine} is not on PATH (.ci/run installs it)")
        pytest.skip(f"{engine} is not on PATH")
    with Emulator() as emu:
        job = run_job(emu, filename, content, output_format)
        convert = next(t for t in job["tasks"] if t["name"] == "convert")
        assert job["status"] == "finished", convert
        assert convert["engine"] == engine
        task_dir = emu.storage / convert["id"]
        [output] = list(task_dir.iterdir())
        assert output.read_bytes().startswith(magic)


def test_formats_only_list_tools_that_are_present() -> None:
    """Without a tool its formats are absent: a conversion to them is INVALID_CONVERSION_TYPE."""
    engines = Engines(tools=())
    assert engines.supports("png", "jpg") and engines.supports("jpeg", "png")
    assert not engines.supports("docx", "pdf") and not engines.supports("wav", "mp3")
    assert engines.supports("xyz", "xyz")  # the same-format copy needs no engine


def test_a_convert_lookalike_is_not_taken_for_imagemagick(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``convert`` on PATH that does not answer ``-version`` as ImageMagick is ignored."""
    fake = tmp_path / "convert"
    fake.write_text("#!/bin/sh\necho 'not the real thing' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert probe_tools() == ()


FAKE_FFMPEG = """#!/bin/sh
if [ "$1" = "-version" ]; then echo "ffmpeg version 6.1.1 Copyright (c) the FFmpeg developers"; exit 0; fi
for last; do :; done
case "$last" in *.flac) printf 'fLaC' > "$last" ;; *) echo "Unknown encoder for $last" >&2; exit 1 ;; esac
"""


def test_a_path_tool_is_detected_run_and_its_errors_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The wiring without the real tool: version probe, argv, output check, stderr on failure."""
    from ccwatch.emulator.engines import ConversionFailed

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ffmpeg").write_text(FAKE_FFMPEG)
    (bin_dir / "ffmpeg").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    [tool] = [t for t in probe_tools() if t.engine == "ffmpeg"]
    assert tool.version == "6.1.1"
    engines = Engines(tools=(tool,))
    assert engines.supports("wav", "flac") and engines.supports("mp4", "mp3")
    source = tmp_path / "tone.wav"
    source.write_bytes(wav_bytes())
    used = engines.convert(source, "wav", "flac", tmp_path / "tone.flac", timeout_s=30)
    assert used.engine == "ffmpeg" and (tmp_path / "tone.flac").read_bytes() == b"fLaC"
    with pytest.raises(ConversionFailed, match="Unknown encoder"):
        engines.convert(source, "wav", "ogg", tmp_path / "tone.ogg", timeout_s=30)
