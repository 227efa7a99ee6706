"""The status page: one small, read-only HTML document with no scripts, and what it shows.

Every value that comes from a file name, a folder or an error message is escaped: file names are
chosen by whoever drops files in a watched folder.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

from ccwatch import __version__
from ccwatch.clock import iso

REFRESH_S = 10


@dataclass(frozen=True, slots=True)
class FolderRow:
    name: str
    input: str
    output: str
    watch: str  # the mode chosen and why ("poll (network filesystem nfs4)"), or the setting
    queued: int
    in_flight: int
    done_24h: int
    failed: int


@dataclass(frozen=True, slots=True)
class FileRow:
    folder: str
    file: str
    state: str
    job_id: str
    since: float


@dataclass(frozen=True, slots=True)
class OutputRow:
    folder: str
    file: str  # the input it came from
    outputs: tuple[str, ...]  # paths relative to the folder's output
    at: float


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    folder: str
    file: str  # relative to the quarantine folder
    code: str
    message: str
    failed_at: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    now: float
    folders: tuple[FolderRow, ...]
    active: tuple[FileRow, ...]
    outputs: tuple[OutputRow, ...]
    quarantine: tuple[QuarantineRow, ...]
    paused: str | None
    paused_since: float | None


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2330; background: #f7f8fa; }
h1 { font-size: 1.4em; margin: 0 0 .2em; } h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
table { border-collapse: collapse; background: #fff; min-width: 40%; }
th, td { border: 1px solid #d5d9e0; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #e9edf3; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.pause { background: #b3261e; color: #fff; padding: .6em 1em; border-radius: 4px; }
.ok { color: #1e7b34; } .muted { color: #6b7280; } .err { color: #b3261e; }
"""


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: frozenset[int] = frozenset(),
           empty: str) -> str:
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{escape(c)}</td>' if i in numeric else f"<td>{escape(c)}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    if not body:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min" if seconds < 7200 else f"{seconds // 3600} h"


def render(s: Snapshot) -> str:
    if s.paused is not None:
        since = f" since {iso(s.paused_since)}" if s.paused_since else ""
        banner = (f'<p class="pause" id="paused">Submissions paused{escape(since)}: '
                  f"{escape(s.paused)}</p>")
    else:
        banner = '<p class="ok" id="running">Submissions running.</p>'
    folders = _table(
        ("folder", "input", "output", "watch", "queued", "in flight", "done (24 h)", "failed"),
        ((f.name, f.input, f.output, f.watch, str(f.queued), str(f.in_flight), str(f.done_24h),
          str(f.failed)) for f in s.folders),
        numeric=frozenset({4, 5, 6, 7}), empty="No folders.")
    active = _table(
        ("folder", "file", "state", "job", "waiting"),
        ((a.folder, a.file, a.state, a.job_id or "-", _age(s.now - a.since)) for a in s.active),
        empty="Nothing queued or in flight.")
    outputs = _table(
        ("folder", "input", "outputs", "at"),
        ((o.folder, o.file, ", ".join(o.outputs) or "(exported elsewhere)", iso(o.at))
         for o in s.outputs),
        empty="No outputs yet.")
    quarantine = _table(
        ("folder", "file", "code", "message", "failed at"),
        ((q.folder, q.file, q.code, q.message, q.failed_at) for q in s.quarantine),
        empty="Quarantine is empty.")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_S}">
<title>ccwatch status</title><style>{_STYLE}</style></head>
<body>
<h1>ccwatch</h1>
<p class="muted">version {escape(__version__)} · {escape(iso(s.now))} · refreshes every {REFRESH_S} s ·
<a href="metrics">metrics</a></p>
{banner}
<h2>Folders</h2>
{folders}
<h2>Queued and in flight</h2>
{active}
<h2>Recent outputs</h2>
{outputs}
<h2 class="err">In quarantine</h2>
{quarantine}
<p class="muted">ccwatch retry PATH (or --all) puts quarantined files back.</p>
</body></html>
"""
