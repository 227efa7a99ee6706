"""``ccwatch init``: a commented starter config with one folder and one template.

Values are written by tomli-w (so any path or URL is quoted correctly); the comments are added
around them here. The result loads with ``config.load`` and runs with ``ccwatch run --once``.
``ccwatch init --example DIR`` instead writes out the example config and templates shipped in the
package (the repository's config.example.toml and templates/).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import tomli_w

from ccwatch.errors import ConfigError

IMAGE_GLOBS = ("*.png", "*.jpg", "*.jpeg", "*.gif", "*.bmp", "*.tif", "*.tiff", "*.webp")


@dataclass(frozen=True, slots=True)
class StarterAnswers:
    input: str = "./inbox"
    output: str = "./outbox"
    quarantine: str = "./quarantine"
    endpoint: str = "embedded"


Line = tuple[str, Any, str]  # key, value, comment ("" for none)


def _table(header: str, lines: Sequence[Line], *, intro: Sequence[str] = ()) -> str:
    out = [f"# {text}" if text else "#" for text in intro]
    out.append(header)
    for key, value, comment in lines:
        # tomli-w writes "key = value\n"; strip it to append the comment on the same line
        text = tomli_w.dumps({key: value}).rstrip("\n")
        if comment and "\n" in text:  # tomli-w writes arrays one item a line: comment above
            out.append(f"# {comment}")
        out.append(f"{text:<40} # {comment}" if comment and "\n" not in text else text)
    return "\n".join(out) + "\n"


def render(answers: StarterAnswers) -> str:
    """The starter config's text."""
    header = [
        "# ccwatch configuration, written by `ccwatch init`.",
        "#",
        "# Check it:  ccwatch check -c THIS_FILE     Run it:  ccwatch run -c THIS_FILE",
        "# Relative paths are resolved against this file's folder, and relative folders are created",
        "# when missing. Every key and its default: config.example.toml and docs/configuration.md.",
        "",
    ]
    cloud = _table("[cloudconvert]", [
        ("endpoint", answers.endpoint,
         "embedded (offline, no account) | live | sandbox | https://…"),
        ("api_key_env", "CLOUDCONVERT_API_KEY", "the variable holding your API key"),
    ], intro=["The API to use. With live or sandbox, put the key in the variable below, or set",
              "api_key_file, or (under systemd) the credential cloudconvert-api-key."])
    daemon = _table("[daemon]", [
        ("state_dir", ".ccwatch-state", 'ledger; "" under systemd (/var/lib/ccwatch)'),
        ("log_format", "text", "text | json"),
    ])
    template = _table("[templates.to-pdf.tasks.in]", [("operation", "import/upload", "")], intro=[
        "A job template: the tasks of a CloudConvert job. Exactly one import/upload task (the",
        "watched file goes there); export/url tasks are what is downloaded. A template exported",
        'from CloudConvert\'s Job Builder can be used instead: [templates.NAME] file = "x.json".',
    ]) + _table("[templates.to-pdf.tasks.convert]", [
        ("operation", "convert", ""), ("input", "in", ""),
        ("output_format", "pdf", "any format CloudConvert offers for the input"),
    ]) + _table("[templates.to-pdf.tasks.out]", [
        ("operation", "export/url", ""), ("input", "convert", ""),
    ])
    folder = _table("[[folders]]", [
        ("name", "inbox", "unique; shown in logs and `ccwatch status`"),
        ("input", answers.input, "watched for new files"),
        ("output", answers.output, "converted files, mirroring the input's subfolders"),
        ("quarantine", answers.quarantine, "failed originals + NAME.error.json"),
        ("watch", "auto", "auto (polls network shares) | events | poll"),
        ("settle_s", 2, "a file must stay unchanged this long before it is sent"),
        ("originals", "keep", "keep | delete | move (then set archive)"),
    ], intro=["A watched folder; add more [[folders]] blocks for more."])
    rule = _table("[[folders.rules]]", [
        ("match", list(IMAGE_GLOBS), "globs on the path relative to input, any case"),
        ("template", "to-pdf", ""),
        ("on_conflict", "rename", 'rename ("name (1).pdf") | overwrite | skip'),
    ], intro=["The folder's rules: the first one matching a file decides its template. To convert",
             'office files add a rule with match = ["*.docx", "*.odt"] (the embedded engine',
             "needs LibreOffice for those; the real API always has it)."])
    return "\n".join(["\n".join(header), cloud, daemon, template, folder, rule])


def write(path: Path, answers: StarterAnswers) -> None:
    """Create ``path`` with the starter config; never overwrites (ConfigError if it exists)."""
    _create(path, render(answers).encode("utf-8"))


def _create(path: Path, data: bytes) -> None:
    try:
        # O_EXCL: an existing file, even one created a moment ago, is never replaced
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    except FileExistsError:
        raise ConfigError("init", f"{path} already exists; not overwriting it (choose another "
                          "PATH or remove it)") from None
    except OSError as exc:
        raise ConfigError("init", f"cannot create {path}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def example_files() -> dict[str, bytes]:
    """The shipped example, by path relative to the folder it is written to."""
    root = resources.files("ccwatch") / "examples"
    found: dict[str, bytes] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif not child.name.startswith("."):
                found[prefix + child.name] = child.read_bytes()

    walk(root, "")
    return found


def write_example(folder: Path) -> list[Path]:
    """Write the example config and its templates into ``folder``; refuse (writing nothing) if any
    of those files exists already."""
    files = example_files()
    targets = {folder / rel: data for rel, data in sorted(files.items())}
    taken = [str(p) for p in targets if os.path.lexists(p)]
    if taken:
        raise ConfigError("init", f"{', '.join(taken)} already exist(s); not overwriting "
                          "(choose another DIR)")
    for path, data in targets.items():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("init", f"cannot create {path.parent}: {exc.strerror or exc}") from exc
        _create(path, data)
    return list(targets)
