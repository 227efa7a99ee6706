"""Reading an HTTP/1.1 answer off a connection: its status line and header fields, then its
body framed by length, by chunks or by the end of the connection (what ``ccwatch.client.wire`` sends
requests for). Broken answers raise ``http.client.HTTPException`` subclasses, a connection that
ends early ``http.client.IncompleteRead`` or ``RemoteDisconnected``."""

from __future__ import annotations

import http.client
import io
import zlib
from collections.abc import Iterator

CHUNK = 1 << 20
MAX_LINE = 64 << 10  # a status, header or chunk-size line longer than this is not HTTP
MAX_HEADERS = 100
REDIRECTS = (301, 302, 303, 307, 308)


class Headers:
    """An answer's header fields, looked up whatever their case; repeated ones joined by ", "."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields  # lower-case names

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._fields.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields


class Answer:
    """A response whose body is streamed with ``chunks()``."""

    def __init__(self, file: io.BufferedReader, method: str) -> None:
        self._file = file
        version, self.status_code, self.reason_phrase, self.headers = read_head(self._file)
        self._will_close = not keeps_alive(version, self.headers.get("Connection") or "")
        self._chunked = False
        self._left: int | None = 0  # bytes of the body (or of its current chunk) still to read
        if method == "HEAD" or self.status_code in (204, 304):
            pass
        elif "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self._chunked = True
        elif (length := self.headers.get("Content-Length")) is None:
            self._left, self._will_close = None, True  # delimited by the end of the connection
        elif not length.strip().isdigit():
            raise http.client.HTTPException(f"unusable Content-Length {length[:40]!r}")
        else:
            self._left = int(length)
        self._finished = self._left == 0 and not self._chunked

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def is_redirect(self) -> bool:
        return self.status_code in REDIRECTS and "Location" in self.headers

    @property
    def done(self) -> bool:
        """The whole body was read, and the server keeps the connection open."""
        return self._finished and not self._will_close

    def chunks(self) -> Iterator[bytes]:
        """The body as it arrives (decoded when the server compressed it anyway)."""
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        decoder = {"gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
                   "deflate": zlib.decompressobj}.get(encoding)
        inflate = decoder() if decoder else None
        while chunk := self._read1(CHUNK):
            if inflate is None:
                yield chunk
            while inflate is not None and chunk:  # CHUNK at a time: a small answer can inflate to GBs
                yield inflate.decompress(chunk, CHUNK)
                chunk = inflate.unconsumed_tail
        if inflate:
            yield inflate.flush()

    def skim(self, limit: int = 64 << 10) -> None:
        """Read a body nobody needs, up to ``limit`` bytes (then the socket is not kept)."""
        size = 0
        for chunk in self.chunks():
            size += len(chunk)
            if size > limit:
                return

    def _read1(self, size: int) -> bytes:
        """Up to ``size`` bytes of the body, at most one read from the socket; b"" at its end."""
        if self._finished:
            return b""
        if self._chunked and self._left == 0:
            self._left = self._chunk_size()
            if self._left == 0:
                self._finished = True
                return b""
        if self._left is None:  # to the end of the connection
            data = self._file.read1(size)
            self._finished = not data
            return data
        data = self._file.read1(min(size, self._left))
        if not data:
            raise http.client.IncompleteRead(b"", self._left)
        self._left -= len(data)
        if self._left == 0:
            if self._chunked:
                self._file.readline(MAX_LINE)  # the CRLF after the chunk
            else:
                self._finished = True
        return data

    def _chunk_size(self) -> int:
        line = self._file.readline(MAX_LINE + 1)
        try:
            size = int(line.split(b";", 1)[0], 16)
        except ValueError:
            raise http.client.HTTPException(f"bad chunk size line {line[:40]!r}") from None
        if size < 0:
            raise http.client.HTTPException(f"bad chunk size line {line[:40]!r}")
        if size == 0:
            read_fields(self._file)  # trailers, if any
        return size


def read_head(file: io.IOBase) -> tuple[str, int, str, Headers]:
    """An answer's status line and header fields (interim 1xx answers skipped)."""
    while True:
        line = file.readline(MAX_LINE + 1)
        if not line:
            raise http.client.RemoteDisconnected("the server closed the connection unanswered")
        if len(line) > MAX_LINE:
            raise http.client.LineTooLong("status line")
        version, status, reason = parse_status(line.decode("latin-1"))
        fields = read_fields(file)
        if not 100 <= status < 200 or status == 101:
            return version, status, reason, Headers(fields)


def read_fields(file: io.IOBase) -> dict[str, str]:
    fields: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = file.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            return fields
        add_field(fields, line.decode("latin-1"))
    raise http.client.HTTPException(f"more than {MAX_HEADERS} header fields")


def parse_status(line: str) -> tuple[str, int, str]:
    """(version, status, reason) of a status line; BadStatusLine if it is not HTTP/1.x."""
    version, _, rest = line.rstrip("\r\n").partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise http.client.BadStatusLine(line[:100])
    return version, int(code), reason.strip()


def add_field(fields: dict[str, str], line: str) -> None:
    """One header line into ``fields`` (lower-case names; a repeated field joined by ", ")."""
    name, sep, value = line.partition(":")
    if sep:
        key, value = name.strip().lower(), value.strip()
        fields[key] = f"{fields[key]}, {value}" if key in fields else value


def keeps_alive(version: str, connection: str) -> bool:
    """Whether the server keeps the connection open after an answer with this version and
    ``Connection`` header."""
    connection = connection.lower()
    return "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
