"""The storage side of the emulator: the upload form and export downloads."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator

import httpx
import pytest
from emulator_helpers import (
    TO_JPG,
    client,
    convert_png,
    create_job,
    export_url,
    plain,
    png_bytes,
    task_named,
    upload,
    wait_job,
    web_get,
    web_head,
    web_post,
)
from PIL import Image

from ccwatch.clock import FakeClock
from ccwatch.emulator import Emulator, serve


@pytest.fixture
def api(emulator: Emulator) -> Iterator[httpx.Client]:
    with client(emulator) as c:
        yield c


def raw_multipart(fields: dict[str, str], file_part: bytes | None, boundary: str = "b0und") -> bytes:
    """Parts written the way minimal clients do: lowercase headers, no spaces, no Content-Type."""
    parts = [f'--{boundary}\r\ncontent-disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    body = b"".join(parts)
    if file_part is not None:
        body += f"--{boundary}\r\n".encode() + file_part + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def test_upload_answers_201_with_s3_style_xml(api: httpx.Client, emulator: Emulator) -> None:
    """201, an XML PostResponse naming the key, and the task finished with size and md5."""
    job = create_job(api)
    content = png_bytes()
    response = upload(job, "photo.png", content)
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/xml"
    up_id = task_named(job, "in")["id"]
    assert f"<Key>{up_id}/photo.png</Key>" in response.text
    assert response.headers["location"] == f"{emulator.storage_url}/tasks/{up_id}/photo.png"
    task = api.get(f"/v2/tasks/{up_id}").json()["data"]
    assert task["status"] == "finished"
    assert task["result"]["files"] == [{"filename": "photo.png",  # no size: as recorded
                                        "md5": hashlib.md5(content).hexdigest()}]
    assert emulator.uploads()[0].md5 == hashlib.md5(content).hexdigest()


def test_upload_tolerates_lowercase_headers_unquoted_filename_no_content_type(
        api: httpx.Client) -> None:
    """The SDK sends no Content-Type on the file part; others send lowercase, unquoted headers."""
    job = create_job(api)
    form = task_named(job, "in")["result"]["form"]
    part = b"content-disposition:form-data;name=\"file\";filename=bare.png\r\n\r\n" + png_bytes()
    response = web_post(form["url"], content=raw_multipart(form["parameters"], part),
                          headers={"content-type": "multipart/form-data; boundary=b0und"})
    assert response.status_code == 201, response.text
    done = wait_job(api, job["id"])
    assert task_named(done, "in")["result"]["files"][0]["filename"] == "bare.png"
    assert done["status"] == "finished"


def test_upload_with_authorization_header_is_400_and_task_keeps_waiting(api: httpx.Client) -> None:
    """Like S3: a Bearer key on a presigned form is refused."""
    job = create_job(api)
    form = task_named(job, "in")["result"]["form"]
    response = web_post(form["url"], data=form["parameters"],
                          files={"file": ("a.png", png_bytes())},
                          headers={"Authorization": "Bearer test-key"})
    assert response.status_code == 400 and "Unsupported Authorization Type" in response.text
    assert api.get(f"/v2/tasks/{task_named(job, 'in')['id']}").json()["data"]["status"] == "waiting"


@pytest.mark.parametrize("file_part", [
    None,
    b'content-disposition: form-data; name="file"\r\n\r\nno filename here',
    b'content-disposition: form-data; name="other"; filename="x.png"\r\n\r\nwrong field',
])
def test_upload_without_a_file_fails_the_task(api: httpx.Client, file_part: bytes | None) -> None:
    """400, and the task ends UPLOAD_FAILED "Upload failed: no files to process"."""
    job = create_job(api)
    form = task_named(job, "in")["result"]["form"]
    response = web_post(form["url"], content=raw_multipart(form["parameters"], file_part),
                          headers={"content-type": "multipart/form-data; boundary=b0und"})
    assert response.status_code == 400
    done = api.get(f"/v2/jobs/{job['id']}").json()["data"]
    up = task_named(done, "in")
    assert (up["status"], up["code"], up["message"]) == (
        "error", "UPLOAD_FAILED", "Upload failed: no files to process")
    assert task_named(done, "convert")["code"] == "INPUT_TASK_FAILED"
    assert done["status"] == "error"


def test_upload_with_a_bad_signature_is_403(api: httpx.Client) -> None:
    """The form's parameters must come back unchanged; the task keeps waiting."""
    job = create_job(api)
    form = task_named(job, "in")["result"]["form"]
    tampered = {**form["parameters"], "X-Amz-Signature": "0" * 64}
    response = web_post(form["url"], data=tampered, files={"file": ("a.png", png_bytes())})
    assert response.status_code == 403 and "<Code>AccessDenied</Code>" in response.text
    assert api.get(f"/v2/tasks/{task_named(job, 'in')['id']}").json()["data"]["status"] == "waiting"


def test_second_upload_is_refused(api: httpx.Client, emulator: Emulator) -> None:
    """A form works once: the task is no longer waiting."""
    job = create_job(api)
    assert upload(job, "a.png", png_bytes()).status_code == 201
    assert upload(job, "b.png", png_bytes()).status_code == 400
    unsigned = web_post(f"{emulator.storage_url}/tasks", files={"file": ("a", b"x")})
    assert unsigned.status_code == 403


def test_download_streams_with_type_length_and_disposition(api: httpx.Client) -> None:
    """Content-Type by extension, Content-Length, attachment by default; HEAD has no body."""
    url = export_url(convert_png(api, "Ünïcode \"name\".png"))
    with plain() as web, web.stream("GET", url) as response:
        body = response.read()
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/jpeg"
        assert int(response.headers["content-length"]) == len(body)
        disposition = response.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="') and "filename*=UTF-8''" in disposition
    with Image.open(io.BytesIO(body)) as img:
        assert img.format == "JPEG"
    head = web_head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(body))


def test_inline_export_says_inline(api: httpx.Client) -> None:
    """``inline: true`` on export/url → Content-Disposition inline."""
    tasks = {**TO_JPG, "out": {**TO_JPG["out"], "inline": True}}
    job = create_job(api, tasks)
    upload(job, "a.png", png_bytes())
    response = web_get(export_url(wait_job(api, job["id"])))
    assert response.headers["content-disposition"] == 'inline; filename="a.jpg"'


def test_archive_multiple_files_exports_one_zip(api: httpx.Client) -> None:
    """``archive_multiple_files`` turns several inputs into one URL."""
    tasks = {"a": {"operation": "import/raw", "file": "1", "filename": "a.txt"},
             "b": {"operation": "import/raw", "file": "2", "filename": "b.txt"},
             "out": {"operation": "export/url", "input": ["a", "b"], "archive_multiple_files": True}}
    done = wait_job(api, create_job(api, tasks)["id"])
    files = task_named(done, "out")["result"]["files"]
    assert [f["filename"] for f in files] == ["archive.zip"]


def test_tampered_or_misnamed_download_urls_are_refused(api: httpx.Client) -> None:
    """A changed signature is 403; a wrong file name or task is 404."""
    url = export_url(convert_png(api))
    assert web_get(url.replace("Signature=", "Signature=0")).status_code == 403
    assert web_get(url.replace("/pic.jpg", "/other.jpg")).status_code == 404
    task_id = url.split("/")[4]
    assert web_get(url.replace(task_id, "0" * len(task_id))).status_code == 404


def test_download_urls_expire_after_their_ttl(api_key: str) -> None:
    """Expiry is on the emulator's clock: 403 AccessDenied once the TTL has passed."""
    clock = FakeClock(start=1_700_000_000.0)
    with Emulator(api_key=api_key, url_ttl_s=3600, clock=clock) as emu, serve(emu), \
            client(emu) as api:
        done = convert_png(api)
        url = export_url(done)
        assert done["tasks"][0]["created_at"] == "2023-11-14T22:13:20+00:00"
        clock.advance(3599)
        assert web_get(url).status_code == 200
        clock.advance(2)
        expired = web_get(url)
        assert expired.status_code == 403 and "AccessDenied" in expired.text


def test_an_upload_arriving_after_close_is_refused_and_leaves_no_storage(
        api: httpx.Client, emulator: Emulator) -> None:
    """The emulator closed (its storage removed) while a client still uploads: the upload is
    answered 503 and does not bring the storage folder back (an empty ``.incoming`` was left in
    the temp dir for ever)."""
    job = create_job(api)
    emulator.close()  # as a stopping daemon's embedded engine does; the servers still answer here
    assert not emulator.storage.exists()
    response = upload(job, "photo.png", png_bytes())
    assert response.status_code == 503
    assert "ServiceUnavailable" in response.text
    assert not emulator.storage.exists()
