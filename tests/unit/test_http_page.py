"""The status page's HTML and the metrics' error classes, without a server."""

from __future__ import annotations

from ccwatch.errors import (
    AccountError,
    CcwatchError,
    FileError,
    FileVanished,
    RateLimited,
    TransientError,
)
from ccwatch.http.metrics import Metrics, error_class
from ccwatch.http.page import FileRow, FolderRow, OutputRow, QuarantineRow, Snapshot, render

EVIL = '<script>alert("x")</script> & "quoted".png'


def snapshot(**changes: object) -> Snapshot:
    base: dict[str, object] = dict(
        now=1_700_000_000.0,
        folders=(FolderRow("office <b>", "/in", "/out", "poll (nfs4)", 1, 2, 3, 4),),
        active=(FileRow("office <b>", EVIL, "processing", "job-1", 1_699_999_000.0),),
        outputs=(OutputRow("office <b>", "a.png", ("sub/a.jpg",), 1_699_999_500.0),),
        quarantine=(QuarantineRow("office <b>", EVIL, "CONVERSION_FAILED", "bad <header>", ""),),
        paused=None, paused_since=None)
    base.update(changes)
    return Snapshot(**base)  # type: ignore[arg-type]


def test_every_name_and_message_is_escaped() -> None:
    html = render(snapshot())
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quoted&quot;.png" in html
    assert "bad &lt;header&gt;" in html and "office &lt;b&gt;" in html
    assert 'id="running"' in html and 'id="paused"' not in html


def test_a_pause_is_shown_with_its_reason() -> None:
    html = render(snapshot(paused="only 3 credits left <now>", paused_since=1_699_990_000.0))
    assert 'id="paused"' in html and "only 3 credits left &lt;now&gt;" in html


def test_empty_sections_say_so() -> None:
    html = render(snapshot(active=(), outputs=(), quarantine=()))
    assert "Nothing queued or in flight." in html and "Quarantine is empty." in html


def test_errors_are_counted_by_class() -> None:
    assert [error_class(e) for e in (RateLimited("x"), AccountError("x"), TransientError("x"),
                                     FileError("x"), CcwatchError("x"), ValueError("x"))] == [
        "rate_limited", "account", "transient", "file", "other", "internal"]
    metrics = Metrics()
    metrics.error(FileError("x"))
    metrics.error(FileVanished("changed"))  # a replaced file is no error
    text = metrics.exposition().decode()
    assert 'ccwatch_api_errors_total{class="file"} 1.0' in text
    assert "ccwatch_api_errors_total{class=\"other\"}" not in text
