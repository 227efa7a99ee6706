"""Log lines cannot be forged through a file name, in either format."""

from __future__ import annotations

import json

import pytest
from loguru import logger

from ccwatch import logs

EVIL = "a\n2026-01-01 00:00:00.000 INFO    forged\x1b[31m\udcff.png"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_control_characters_and_undecodable_bytes_are_escaped(
        log_format: str, capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup(log_format)
    try:
        logger.bind(file=EVIL).info("quarantined {}", EVIL)
    finally:
        logger.remove()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    text = json.loads(lines[0])["message"] + json.loads(lines[0])["file"] if log_format == "json" \
        else lines[0]
    assert "\x1b" not in text and "\n" not in text
    assert "a\\n2026-01-01" in text and "\\x1b[31m" in text and "\\udcff" in text
