"""The storage host's two requests: the upload form's POST (S3-like) and export downloads, both
streamed through disk."""

from __future__ import annotations

import hashlib
import io
import mimetypes
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from werkzeug.exceptions import HTTPException
from werkzeug.formparser import parse_form_data
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import wrap_file

from ccwatch.emulator.manage import complete_upload, fail_upload, form_expired
from ccwatch.emulator.work import md5_of

if TYPE_CHECKING:
    from ccwatch.emulator.core import Emulator

CHUNK = 1 << 16
FORM_FIELD_MEMORY = 1 << 20  # text fields only; file parts always go to disk


class _HashingFile(io.FileIO):
    """The upload's file on disk, hashed while werkzeug writes it: no second read of 1 GB."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "w+")
        self.path = path
        self.digest = hashlib.md5(usedforsecurity=False)

    def write(self, data: Any) -> int:
        written = super().write(data)
        self.digest.update(memoryview(data)[:written])
        return written


def s3_error(status: int, code: str, message: str) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error>")
    return Response(body, status=status, content_type="application/xml")


def _receive(request: Request, folder: Path) -> tuple[str, _HashingFile | None, dict[str, str]]:
    """Parse the multipart body, file parts straight to disk: (file name, its file, text fields).

    The file is the part named ``file`` with a non-empty filename; other file parts are dropped.
    """
    made: list[_HashingFile] = []

    def to_disk(total_content_length: int | None, content_type: str | None,
                filename: str | None, content_length: int | None = None) -> IO[bytes]:
        made.append(_HashingFile(folder / f".upload-{secrets.token_hex(8)}"))
        return made[-1]

    try:
        _, form, files = parse_form_data(request.environ, stream_factory=to_disk,
                                         max_form_memory_size=FORM_FIELD_MEMORY, max_form_parts=100)
    except HTTPException:  # e.g. a text part over the memory cap
        form, files = None, None
    for f in made:
        f.close()
    upload = files.get("file") if files is not None else None
    name = upload.filename if upload is not None and upload.filename else ""
    chosen = next((f for f in made if name and upload is not None and upload.stream is f), None)
    for f in made:
        if f is not chosen:
            f.path.unlink(missing_ok=True)
    fields = {k: str(form.get(k, "")) for k in form} if form is not None else {}
    return name, chosen, fields


def handle_upload(emu: Emulator, request: Request) -> Response:
    """``POST /<bucket>``: the task comes from the signed policy's key prefix, as in S3."""
    if "Authorization" in request.headers:  # S3 refuses presigned posts that carry a Bearer key
        return s3_error(400, "InvalidArgument", "Unsupported Authorization Type")
    if emu.closed:  # an upload still arriving as the emulator stops: its storage is gone
        return s3_error(503, "ServiceUnavailable", "Service is unable to handle request.")
    filename, chosen, fields = _receive(request, emu.storage_folder(".incoming"))
    task_id, problem = emu.signer.check_form(fields, emu.clock.wall())
    if not problem and task_id and form_expired(emu, task_id):
        problem = "Invalid according to Policy: Policy expired."
    if problem or task_id is None:
        if chosen is not None:
            chosen.path.unlink(missing_ok=True)
        return s3_error(403, "AccessDenied", problem)
    if chosen is None:
        fail_upload(emu, task_id)
        return s3_error(400, "InvalidArgument", "Upload failed: no files to process")
    md5 = chosen.digest.hexdigest()
    if not complete_upload(emu, task_id, filename, chosen.path, md5):
        return s3_error(400, "InvalidRequest", "The task is not waiting for an upload")
    key = f"{task_id}/{filename}"
    location = f"{emu.storage_url}/{emu.signer.bucket}/{quote(key)}"
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse><Bucket>{emu.signer.bucket}'
            f"</Bucket><Key>{escape(key)}</Key><ETag>&#34;{md5}&#34;</ETag>"
            f"<Location>{escape(location)}</Location></PostResponse>")
    return Response(body, status=201, content_type="application/xml",
                    headers={"Location": location, "ETag": f'"{md5}"'})


def content_disposition(kind: str, filename: str) -> str:
    if filename.isascii() and '"' not in filename and "\\" not in filename:
        return f'{kind}; filename="{filename}"'
    fallback = "".join(c if c.isascii() and c not in '"\\' else "_" for c in filename)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"


def _first_bytes(path: Path, limit: int) -> Iterator[bytes]:
    with path.open("rb") as fh:
        left = limit
        while left > 0 and (chunk := fh.read(min(CHUNK, left))):
            left -= len(chunk)
            yield chunk


def handle_download(emu: Emulator, request: Request, task_id: str, filename: str) -> Response:
    status, f, inline = emu.find_download(task_id, filename, request.args.get("Expires", ""),
                                          request.args.get("Signature", ""))
    if status == "expired":
        return s3_error(403, "AccessDenied", "Request has expired")
    if f is None:
        return s3_error(404, "NoSuchKey", "The specified key does not exist.")
    size = f.path.stat().st_size
    if f.md5 is None:
        f.md5 = md5_of(f.path)  # computed once, on the first download
    headers = {
        "Content-Type": mimetypes.guess_type(f.filename)[0] or "application/octet-stream",
        "Content-Length": str(size),
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition("inline" if inline else "attachment", f.filename),
        "ETag": f'"{f.md5}"',
    }
    if request.method == "HEAD":
        return Response([], status=200, headers=headers, direct_passthrough=True)
    body: Any
    if size > 0 and emu.faults.take("truncate_download", "GET", request.path):
        body = _first_bytes(f.path, size // 2)  # waitress closes the connection when short
    else:
        body = wrap_file(request.environ, f.path.open("rb"), CHUNK)
    return Response(body, status=200, headers=headers, direct_passthrough=True)
