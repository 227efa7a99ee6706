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


def test_every_character_escapes_as_the_full_rule_says() -> None:
    """A text with nothing to escape skips the work; every other comes out exactly as the full
    rule (controls as ``\\xNN``, surrogates as ``\\udcNN``) writes it, whatever plane it is in."""
    def full_rule(text: str) -> str:
        return text.translate(logs._CONTROLS).encode("utf-8", "backslashreplace").decode("utf-8")

    samples = [chr(c) for c in (*range(0x3100), *range(0xD800, 0xE000), 0xFEFF, 0x1F600, 0xE0001)]
    for c in samples:
        assert logs.escape(f"name {c}.png") == full_rule(f"name {c}.png"), hex(ord(c))
    assert logs.escape("plain.png") == "plain.png"
    assert logs.escape("tab\there") == "tab\\there"


def test_a_secret_registered_later_is_scrubbed_longest_first() -> None:
    logs.redact("key-abcdef", "key-abcdef-and-more")
    assert logs.scrub("x key-abcdef-and-more y key-abcdef") == "x [secure] y [secure]"
    assert logs.scrub("nothing here") == "nothing here"
