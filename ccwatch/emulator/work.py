"""What each operation does to files, away from the locks: inputs in, stored files out."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import PIL

from ccwatch.emulator import engines as eng
from ccwatch.emulator.engines import ConversionFailed, Engines
from ccwatch.emulator.store import StoredFile

CHUNK = 1 << 20


@dataclass
class Outcome:
    files: list[StoredFile]
    engine: str | None = None
    engine_version: str | None = None
    credits: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def safe_name(name: str, fallback: str = "file") -> str:
    """A bare file name: no directories, no control characters, never empty or a dot name."""
    base = PurePosixPath(name.replace("\\", "/")).name
    base = "".join(ch for ch in base if ch >= " " and ch != "\x7f").strip()
    return base if base not in ("", ".", "..") else fallback


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def stored(path: Path, filename: str, *, with_md5: bool = False) -> StoredFile:
    return StoredFile(filename=filename, path=path, size=path.stat().st_size,
                      md5=md5_of(path) if with_md5 else None)


def _write(out_dir: Path, filename: str, data: bytes) -> StoredFile:
    name = safe_name(filename)
    path = out_dir / name
    path.write_bytes(data)
    return StoredFile(filename=name, path=path, size=len(data),
                      md5=hashlib.md5(data, usedforsecurity=False).hexdigest())


def output_name(payload: dict[str, Any], input_name: str, fmt: str, index: int) -> str:
    given = payload.get("filename")
    if isinstance(given, str) and given and index == 0:
        return safe_name(given)
    return safe_name(f"{Path(input_name).stem}.{eng.norm(fmt)}")


UrlResolver = Callable[[str], tuple[str, Path] | None]


def run_operation(op: str, payload: dict[str, Any], inputs: list[tuple[str, Path]], out_dir: Path,
                  engines: Engines, resolve_url: UrlResolver) -> Outcome:
    """Everything but ``import/upload`` (the form does that) and ``export/url`` (the core signs URLs)."""
    out_dir.mkdir(exist_ok=True)  # no parents: as Emulator.storage_folder, never the storage
    if op == "import/base64":
        return Outcome([_write(out_dir, payload["filename"], base64.b64decode(payload["file"]))])
    if op == "import/raw":
        return Outcome([_write(out_dir, payload["filename"], str(payload["file"]).encode())])
    if op == "import/url":
        return _import_url(payload, out_dir, resolve_url)
    if not inputs:
        raise ConversionFailed("The input task has no files", "INPUT_TASK_FAILED")
    if op == "convert":
        return _convert(payload, inputs, out_dir, engines)
    if op == "thumbnail":
        fmt = eng.norm(str(payload["output_format"]))
        files = []
        for i, (name, path) in enumerate(inputs):
            dest = out_dir / output_name(payload, name, fmt, i)
            eng.thumbnail(path, dest, fmt, payload)
            files.append(stored(dest, dest.name))
        return Outcome(files, "pillow", PIL.__version__, credits=1)
    if op == "archive":
        fmt = eng.norm(str(payload["output_format"]))
        dest = out_dir / safe_name(str(payload.get("filename") or f"archive.{fmt}"))
        eng.archive(inputs, dest, fmt)
        return Outcome([stored(dest, dest.name)], "archive", "1", credits=1)
    raise ConversionFailed(f"The operation {op} is not supported by the emulator", "INVALID_OPERATION")


def _convert(payload: dict[str, Any], inputs: list[tuple[str, Path]], out_dir: Path,
             engines: Engines) -> Outcome:
    fmt_out = str(payload["output_format"])
    timeout_s = float(payload.get("timeout") or 300)
    files, used = [], None
    for i, (name, path) in enumerate(inputs):
        fmt_in = str(payload.get("input_format") or eng.format_of(name))
        if not fmt_in:
            raise ConversionFailed(f"Cannot tell the input format of {name}", "INVALID_CONVERSION_TYPE")
        dest = out_dir / output_name(payload, name, fmt_out, i)
        used = engines.convert(path, fmt_in, fmt_out, dest, timeout_s)
        files.append(stored(dest, dest.name))
    assert used is not None  # inputs is not empty
    return Outcome(files, used.engine, used.engine_version, credits=1)


def _import_url(payload: dict[str, Any], out_dir: Path, resolve_url: UrlResolver) -> Outcome:
    found = resolve_url(str(payload["url"]))
    if found is None:
        raise ConversionFailed("The emulator can only import URLs it serves itself (export/url)",
                               "IMPORT_FAILED")
    name, src = found
    dest = out_dir / safe_name(str(payload.get("filename") or name))
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)
    return Outcome([stored(dest, dest.name, with_md5=True)])
