"""Conversion tools found on PATH at start: LibreOffice, ffmpeg, ImageMagick. Absent tools add nothing."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

WORD = ("doc", "docx", "odt", "rtf", "txt", "html")
SHEET = ("xls", "xlsx", "ods", "csv")
SLIDES = ("ppt", "pptx", "odp")
VIDEO = ("mp4", "mkv", "webm", "mov", "avi")
AUDIO = ("mp3", "wav", "ogg", "flac", "m4a", "aac")
MAGICK_ONLY_IN = ("svg", "heic", "psd", "ico", "eps", "tga")
MAGICK_OUT = ("png", "jpg", "webp", "tiff", "pdf")


@dataclass(frozen=True)
class Tool:
    engine: str
    version: str
    command: tuple[str, ...]
    pairs: frozenset[tuple[str, str]]


def _probe(argv: list[str], marker: str) -> str | None:
    """The tool's version when ``argv`` runs and mentions ``marker`` (stand-ins and look-alikes don't)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    out = done.stdout + done.stderr
    if done.returncode != 0 or marker.lower() not in out.lower():
        return None
    found = re.search(r"(\d+\.\d+(?:\.\d+)?)", out)
    return found.group(1) if found else "unknown"


def _group_pairs(*groups: tuple[str, ...], extra_out: tuple[str, ...] = ()) -> set[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for group in groups:
        for src in group:
            pairs.update((src, dst) for dst in (*group, *extra_out) if dst != src)
    return pairs


def _libreoffice() -> Tool | None:
    exe = shutil.which("soffice") or shutil.which("libreoffice")
    version = _probe([exe, "--version"], "libreoffice") if exe else None
    if exe is None or version is None:
        return None
    pairs = _group_pairs(WORD, SHEET, SLIDES, extra_out=("pdf",))
    return Tool("libreoffice", version, (exe,), frozenset(pairs))


def _ffmpeg() -> Tool | None:
    exe = shutil.which("ffmpeg")
    version = _probe([exe, "-version"], "ffmpeg") if exe else None
    if exe is None or version is None:
        return None
    pairs = _group_pairs(VIDEO, extra_out=(*AUDIO, "gif")) | _group_pairs(AUDIO)
    return Tool("ffmpeg", version, (exe,), frozenset(pairs))


def _imagemagick() -> Tool | None:
    for name in ("magick", "convert"):
        exe = shutil.which(name)
        version = _probe([exe, "-version"], "imagemagick") if exe else None
        if exe is not None and version is not None:
            pairs = {(src, dst) for src in MAGICK_ONLY_IN for dst in MAGICK_OUT}
            return Tool("imagemagick", version, (exe,), frozenset(pairs))
    return None


def probe_tools() -> tuple[Tool, ...]:
    """The tools on PATH now, each asked for its version (a lookalike answers wrongly)."""
    return tuple(t for t in (_libreoffice(), _ffmpeg(), _imagemagick()) if t is not None)


@functools.cache
def detect_tools() -> tuple[Tool, ...]:
    """:func:`probe_tools` once per process: tools don't appear or vanish while tests run."""
    return probe_tools()


def run_tool(tool: Tool, src: Path, dest: Path, output_format: str, timeout_s: float) -> None:
    """Convert ``src`` to ``dest``; raises RuntimeError with the tool's own words on failure."""
    if tool.engine == "libreoffice":
        with tempfile.TemporaryDirectory(prefix="emulator-soffice-") as work:
            profile = Path(work, "profile").as_uri()
            argv = [*tool.command, f"-env:UserInstallation={profile}", "--headless",
                    "--convert-to", output_format, "--outdir", work, str(src)]
            _run(argv, timeout_s)
            produced = Path(work, f"{src.stem}.{output_format}")
            if not produced.exists():
                raise RuntimeError("LibreOffice produced no output")
            shutil.move(produced, dest)
        return
    if tool.engine == "ffmpeg":
        argv = [*tool.command, "-nostdin", "-y", "-loglevel", "error", "-i", str(src), str(dest)]
    else:
        argv = [*tool.command, str(src), str(dest)]
    _run(argv, timeout_s)
    if not dest.exists():
        raise RuntimeError(f"{tool.engine} produced no output")


def _run(argv: list[str], timeout_s: float) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"timed out after {timeout_s:g} s") from exc
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"exit status {done.returncode}")
