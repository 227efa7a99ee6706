"""Helpers for tests and benchmarks: waiting with a deadline, sample images, config text.

Shipped with the package so the benchmarks and anyone embedding ccwatch can use them too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.02,
             message: str = "condition") -> T:
    """Poll ``condition`` until it returns something truthy; fail with ``message`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def make_image(path: Path, *, size: tuple[int, int] = (32, 24), fmt: str | None = None,
               color: tuple[int, int, int] = (200, 30, 30)) -> Path:
    """Write a small real image (format from the suffix unless given)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def config_text(*, endpoint: str, state_dir: Path, input_dir: Path, output: Path, quarantine: Path,
                rules: Sequence[str], templates: str, folder_extra: str = "",
                daemon_extra: str = "", top_extra: str = "", settle_s: float = 0.3) -> str:
    """A whole TOML config for one folder; ``rules`` are ``[[folders.rules]]`` bodies."""
    rule_text = "\n".join(f"[[folders.rules]]\n{r}\n" for r in rules)
    return f"""{top_extra}
[cloudconvert]
endpoint = "{endpoint}"

[daemon]
state_dir = "{state_dir}"
poll_interval_s = 0.1
poll_max_s = 0.5
shutdown_grace_s = 10
{daemon_extra}

{templates}

[[folders]]
name = "inbox"
input = "{input_dir}"
output = "{output}"
quarantine = "{quarantine}"
settle_s = {settle_s}
poll_s = 0.2
{folder_extra}

{rule_text}
"""


TO_JPG = """
[templates.to-jpg.tasks.in]
operation = "import/upload"
[templates.to-jpg.tasks.convert]
operation = "convert"
input = "in"
output_format = "jpg"
[templates.to-jpg.tasks.out]
operation = "export/url"
input = "convert"
"""

TO_PNG = TO_JPG.replace("to-jpg", "to-png").replace('"jpg"', '"png"')
TO_PDF = TO_JPG.replace("to-jpg", "to-pdf").replace('"jpg"', '"pdf"')
