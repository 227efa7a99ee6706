"""``ccwatch explain``: what the daemon would do with each input file, converting nothing.

For a file a rule takes: the rule, its template and the output path(s) it would get. Otherwise why
it is ignored or held back (the same reasons the daemon logs). Output names follow the server's
naming (:func:`ccwatch.config.templates.predicted_filenames`).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from ccwatch import fs
from ccwatch.config import Config, FolderConfig
from ccwatch.config import templates as tpl
from ccwatch.stages.intake import rule_for


@dataclass(frozen=True, slots=True)
class Verdict:
    path: Path
    folder: str | None
    rule: int | None = None
    match: tuple[str, ...] = ()
    template: str | None = None
    outputs: tuple[str, ...] = ()  # predicted output paths (with a note when one exists)
    why: str | None = None  # why it is not converted (or held back)


def explain(config: Config, paths: Iterable[Path], *, today: dt.date | None = None) -> Iterator[Verdict]:
    """A verdict per path; with no paths, every file under every watched input."""
    given = list(paths)
    date = (today or dt.datetime.now(dt.UTC).date()).isoformat()
    if not given:
        for folder in config.folders:
            for path in _files(folder):
                yield _verdict(config, folder, path, date)
        return
    for path in given:
        absolute = Path(os.path.abspath(path))
        home = next((f for f in config.folders if fs.inside(f.input, absolute)), None)
        if home is None:
            yield Verdict(absolute, None, why="not inside any watched input folder")
        elif not absolute.is_file():
            yield Verdict(absolute, home.name, why="not a regular file")
        else:
            yield _verdict(config, home, absolute, date)


def _files(folder: FolderConfig) -> Iterator[Path]:
    if not folder.input.is_dir():
        return
    found = folder.input.rglob("*") if folder.recursive else folder.input.iterdir()
    for path in sorted(found):
        if path.is_file() and not path.is_symlink():
            yield path


def _verdict(config: Config, folder: FolderConfig, path: Path, date: str) -> Verdict:
    relpath = PurePosixPath(path.resolve().relative_to(folder.input.resolve()).as_posix())
    index = rule_for(folder, relpath)
    if isinstance(index, str):
        return Verdict(path, folder.name, why=index)
    rule = folder.rules[index]
    base = Verdict(path, folder.name, index, rule.match, rule.template)
    size = path.stat().st_size
    if size == 0:
        return replace(base, why="empty file: waits for content")
    if size > folder.max_file_size:
        return replace(base, why=f"larger than max_file_size ({size} > {folder.max_file_size} bytes): "
                     "would be quarantined")
    template = config.templates[rule.template]
    outputs = []
    for n, server_name in enumerate(tpl.predicted_filenames(template, relpath), start=1):
        name = tpl.format_output_name(rule.output_name, input_relpath=relpath,
                                      output_filename=fs.sanitize_filename(server_name), n=n,
                                      date=date)
        final = folder.output / relpath.parent / fs.sanitize_filename(name)
        note = f" (exists; on_conflict = {rule.on_conflict})" if final.exists() else ""
        outputs.append(f"{final}{note}")
    if not outputs:
        return replace(base, why="its template exports no files here (export elsewhere)")
    return replace(base, outputs=tuple(outputs))
