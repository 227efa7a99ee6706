"""What the emulator can convert: Pillow images, thumbnails, archives, same-format copies, PATH tools."""

from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import PIL
from PIL import Image, ImageOps, features

from ccwatch.emulator.external import Tool, detect_tools, run_tool

ALIASES = {"jpeg": "jpg", "tif": "tiff"}
PIL_SAVE = {"png": "PNG", "jpg": "JPEG", "gif": "GIF", "bmp": "BMP", "tiff": "TIFF", "pdf": "PDF"}
if features.check("webp"):
    PIL_SAVE["webp"] = "WEBP"
PIL_IN = tuple(f for f in PIL_SAVE if f != "pdf")
THUMBNAIL_OUT = ("png", "webp", "jpg")
ARCHIVE_OUT = ("zip", "tar", "tar.gz")
FITS = ("max", "crop", "scale")
GROUPS = {"pdf": "document", "zip": "archive", "tar": "archive", "tar.gz": "archive"}


class ConversionFailed(Exception):
    """A task's engine could not produce its output; ``code`` goes into the task."""

    def __init__(self, message: str, code: str = "CONVERSION_FAILED") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Conversion:
    input_format: str
    output_format: str
    engine: str
    engine_version: str

    def shape(self, operation: str = "convert") -> dict[str, Any]:
        group = GROUPS.get(self.input_format, "image" if self.input_format in PIL_SAVE else "other")
        return {
            "operation": operation,
            "input_format": self.input_format,
            "output_format": self.output_format,
            "engine": self.engine,
            "credits": 1,
            "options": [],
            "engine_versions": [{"version": self.engine_version, "default": True, "latest": True,
                                 "deprecated": False, "experimental": False}],
            "deprecated": False,
            "experimental": False,
            "meta": {"group": group},
        }


def norm(fmt: str) -> str:
    fmt = fmt.lower().lstrip(".")
    return ALIASES.get(fmt, fmt)


def format_of(filename: str) -> str:
    """The format a file name implies (``a.tar.gz`` → ``tar.gz``, ``a.JPEG`` → ``jpg``)."""
    lower = filename.lower()
    if lower.endswith(".tar.gz"):
        return "tar.gz"
    return norm(Path(lower).suffix)


class Engines:
    def __init__(self, tools: tuple[Tool, ...] | None = None) -> None:
        self.tools = detect_tools() if tools is None else tools
        pil = PIL.__version__
        self._table: dict[tuple[str, str], Conversion] = {}
        for tool in self.tools:  # Pillow below overrides where both can: it is in-process
            for src, dst in tool.pairs:
                self._table[(src, dst)] = Conversion(src, dst, tool.engine, tool.version)
        for src in PIL_IN:
            for dst in PIL_SAVE:
                if dst != src:
                    self._table[(src, dst)] = Conversion(src, dst, "pillow", pil)
        self.known = {f for pair in self._table for f in pair} | set(ARCHIVE_OUT)

    def conversions(self) -> list[Conversion]:
        copies = [Conversion(f, f, "copy", "1") for f in sorted(self.known)]
        return sorted(self._table.values(), key=lambda c: (c.input_format, c.output_format)) + copies

    def supports(self, input_format: str, output_format: str) -> bool:
        src, dst = norm(input_format), norm(output_format)
        return src == dst or (src, dst) in self._table

    def convert(self, src: Path, input_format: str, output_format: str, dest: Path,
                timeout_s: float) -> Conversion:
        fmt_in, fmt_out = norm(input_format), norm(output_format)
        if fmt_in == fmt_out:
            _copy(src, dest)
            return Conversion(fmt_in, fmt_out, "copy", "1")
        conversion = self._table.get((fmt_in, fmt_out))
        if conversion is None:
            raise ConversionFailed("This conversion type is not supported", "INVALID_CONVERSION_TYPE")
        if conversion.engine == "pillow":
            _pillow_save(src, dest, fmt_out)
            return conversion
        tool = next(t for t in self.tools if t.engine == conversion.engine)
        try:
            run_tool(tool, src, dest, fmt_out, timeout_s)
        except RuntimeError as exc:
            raise ConversionFailed(f"{tool.engine}: {exc}") from exc
        return conversion


def _copy(src: Path, dest: Path) -> None:
    """A hard link when possible, else a kernel-side copy: a 2 GB input is never read into memory."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def _open_image(src: Path) -> Image.Image:
    try:
        img = Image.open(src)
        img.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ConversionFailed(f"Invalid image file: {exc}") from exc
    return img


def _for_format(img: Image.Image, fmt: str) -> Image.Image:
    """JPEG and PDF have no alpha: put transparent parts on white, as CloudConvert does."""
    if fmt in ("jpg", "pdf", "bmp") and img.mode not in ("RGB", "L"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, "white")
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img


def _pillow_save(src: Path, dest: Path, fmt: str) -> None:
    with _open_image(src) as img:
        try:
            _for_format(img, fmt).save(dest, PIL_SAVE[fmt])
        except (OSError, ValueError) as exc:
            raise ConversionFailed(f"Could not write {fmt}: {exc}") from exc


def thumbnail(src: Path, dest: Path, fmt: str, options: dict[str, Any]) -> None:
    fmt = norm(fmt)
    fit = str(options.get("fit") or "max")
    with _open_image(src) as img:
        width = int(options.get("width") or 0)
        height = int(options.get("height") or 0)
        if not width and not height:
            width = height = 256
        width = width or max(1, round(img.width * height / img.height))
        height = height or max(1, round(img.height * width / img.width))
        if fit == "crop":
            out = ImageOps.fit(img, (width, height))
        elif fit == "scale":
            out = img.resize((width, height))
        else:
            out = img.copy()
            out.thumbnail((width, height))
        _for_format(out, fmt).save(dest, PIL_SAVE[fmt])


def archive(inputs: list[tuple[str, Path]], dest: Path, fmt: str) -> None:
    """Members are written from their files in chunks (zipfile/tarfile stream them)."""
    names: set[str] = set()
    members: list[tuple[str, Path]] = []
    for name, path in inputs:
        unique, n = name, 1
        while unique in names:
            unique = f"{Path(name).stem} ({n}){Path(name).suffix}"
            n += 1
        names.add(unique)
        members.append((unique, path))
    if fmt == "zip":
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, path in members:
                zf.write(path, name)
        return
    with tarfile.open(dest, "w:gz") if fmt == "tar.gz" else tarfile.open(dest, "w") as tf:
        for name, path in members:
            tf.add(path, name)
