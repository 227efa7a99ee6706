"""The emulator's jobs and tasks API: shapes, status flow, validation, lists, deletes, sync waits."""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
import time
import zipfile
from collections.abc import Iterator

import httpx
import pytest
from emulator_helpers import (
    TO_JPG,
    client,
    convert_png,
    create_job,
    export_url,
    png_bytes,
    task_named,
    upload,
    wait_job,
    web_get,
)
from PIL import Image

from ccwatch.emulator import Emulator, wsgi_app

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")


@pytest.fixture
def api(emulator: Emulator) -> Iterator[httpx.Client]:
    with client(emulator) as c:
        yield c


@pytest.fixture
def wsgi() -> Iterator[httpx.Client]:
    """The app without a socket: fast enough for pure validation checks."""
    with Emulator(api_key="k") as emu, httpx.Client(
            transport=httpx.WSGITransport(app=wsgi_app(emu)), base_url="http://emu.test",
            headers={"Authorization": "Bearer k"}) as c:
        yield c


def test_create_job_returns_every_task_with_the_api_shape(api: httpx.Client,
                                                         emulator: Emulator) -> None:
    """201 with all tasks; the upload task waits with an S3 form on the storage host."""
    response = api.post("/v2/jobs", json={"tasks": TO_JPG, "tag": "t-1",
                                          "webhook_url": "http://127.0.0.1:9/hook"})
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["x-ratelimit-limit"]) > int(response.headers["x-ratelimit-remaining"])
    job = response.json()["data"]
    assert job["status"] == "waiting" and job["tag"] == "t-1"
    assert "webhook_url" not in job  # stored, never echoed (recorded)
    assert ISO.match(job["created_at"]) and job["ended_at"] is None
    assert job["links"]["self"] == f"{emulator.base_url}/v2/jobs/{job['id']}"
    up, conv, out = (task_named(job, n) for n in ("in", "convert", "out"))
    assert out["depends_on_task_ids"] == [conv["id"]]
    assert up["status"] == "waiting" and up["message"] == "Waiting for file upload"
    form = up["result"]["form"]
    assert form["url"] == f"{emulator.storage_url}/tasks" != f"{emulator.base_url}/tasks"
    assert list(form["parameters"]) == ["acl", "key", "success_action_status", "X-Amz-Credential",
                                        "X-Amz-Algorithm", "X-Amz-Date", "Policy",
                                        "X-Amz-Signature"]
    assert form["parameters"]["key"] == f"{up['id']}/${{filename}}"
    assert all(isinstance(v, str) for v in form["parameters"].values())
    assert "payload" not in conv and "region" not in conv
    shown = api.get(f"/v2/tasks/{conv['id']}", params={"include": "payload"}).json()["data"]
    assert shown["payload"]["input"] == ["in"] and "region" in shown
    assert conv["depends_on_task_ids"] == [up["id"]]
    assert conv["job_id"] == job["id"] and conv["credits"] is None and conv["status"] == "waiting"
    assert conv["links"]["self"].endswith(f"/v2/tasks/{conv['id']}")


def test_a_png_goes_through_upload_convert_export(api: httpx.Client, emulator: Emulator) -> None:
    """Status flow, timestamps, credits, engine, result files and a valid JPEG download."""
    credits_before = api.get("/v2/users/me").json()["data"]["credits"]
    job = convert_png(api, "holiday.png")
    assert job["status"] == "finished"
    assert ISO.match(job["started_at"]) and ISO.match(job["ended_at"])
    up, conv, out = (task_named(job, n) for n in ("in", "convert", "out"))
    assert [t["status"] for t in (up, conv, out)] == ["finished"] * 3
    assert up["result"]["files"][0]["filename"] == "holiday.png"
    assert up["result"]["files"][0]["md5"] and up["credits"] == 0
    assert conv["result"]["files"] == [{"filename": "holiday.jpg",
                                       "size": conv["result"]["files"][0]["size"]}]
    assert conv["credits"] == 1 and conv["engine"] == "pillow" and conv["engine_version"]
    assert out["credits"] == 0 and "engine" not in out
    file = out["result"]["files"][0]
    download = web_get(file["url"])
    assert download.status_code == 200 and len(download.content) == file["size"]
    with Image.open(io.BytesIO(download.content)) as img:
        assert img.format == "JPEG" and img.size == (32, 24)
    assert api.get("/v2/users/me").json()["data"]["credits"] == credits_before - 1
    assert [u.filename for u in emulator.uploads()] == ["holiday.png"]


def test_output_name_is_the_tasks_filename_when_given(api: httpx.Client) -> None:
    """``filename`` on the convert task names its output."""
    tasks = {**TO_JPG, "convert": {**TO_JPG["convert"], "filename": "renamed.jpg"}}
    job = create_job(api, tasks)
    upload(job, "a.png", png_bytes())
    done = wait_job(api, job["id"])
    assert task_named(done, "out")["result"]["files"][0]["filename"] == "renamed.jpg"


@pytest.mark.parametrize(("body", "field"), [
    ({}, "tasks"),
    ({"tasks": {}}, "tasks"),
    ({"tasks": {"bad name!": {"operation": "import/upload"}}}, "tasks.bad name!"),
    ({"tasks": {"a": {"operation": "nope"}}}, "tasks.a.operation"),
    ({"tasks": {"a": {"operation": "convert", "input": "missing", "output_format": "jpg"}}},
     "tasks.a.input"),
    ({"tasks": {"a": {"operation": "import/upload"},
                "b": {"operation": "export/url", "input": ["a", "ghost"]}}}, "tasks.b.input"),
    ({"tasks": {"a": {"operation": "import/upload"},
                "b": {"operation": "convert", "input": "a"}}}, "tasks.b.output_format"),
    ({"tasks": {"a": {"operation": "import/url", "url": "not a url"}}}, "tasks.a.url"),
    ({"tasks": {"a": {"operation": "export/url", "input": "b"},
                "b": {"operation": "export/url", "input": "a"}}}, "tasks.b.input"),
])
def test_invalid_jobs_get_422_invalid_data(wsgi: httpx.Client, body: dict[str, object],
                                           field: str) -> None:
    """The API's validation body names the offending field."""
    response = wsgi.post("/v2/jobs", json=body)
    assert response.status_code == 422
    payload = response.json()
    assert payload["message"] == "The given data was invalid."
    assert payload["code"] == "INVALID_DATA"
    assert field in payload["errors"]


def test_unknown_conversion_is_invalid_conversion_type(wsgi: httpx.Client) -> None:
    """A pair no engine can do is refused at creation when the input format is known."""
    tasks = {"in": {"operation": "import/upload"},
             "c": {"operation": "convert", "input": "in", "input_format": "png",
                   "output_format": "docx"}}
    response = wsgi.post("/v2/jobs", json={"tasks": tasks})
    assert response.status_code == 422
    assert response.json() == {"message": "This conversion type is not supported",
                               "code": "INVALID_CONVERSION_TYPE"}
    raw = {"in": {"operation": "import/raw", "file": "x", "filename": "a.txt"},
           "c": {"operation": "convert", "input": "in", "output_format": "png"}}
    assert wsgi.post("/v2/jobs", json={"tasks": raw}).json()["code"] == "INVALID_CONVERSION_TYPE"


def test_malformed_json_is_400(wsgi: httpx.Client) -> None:
    """A body that is not JSON at all."""
    response = wsgi.post("/v2/jobs", content=b"{nope", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["code"] == "INVALID_DATA"


def test_missing_or_wrong_key_is_401(emulator: Emulator) -> None:
    """Every API route wants the Bearer key; the body is the API's."""
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic test-key"}):
        response = web_get(f"{emulator.base_url}/v2/jobs", headers=headers)
        assert response.status_code == 401
        assert response.json() == {"message": "Unauthenticated.", "code": "UNAUTHENTICATED"}
        assert response.headers["content-type"] == "application/json"
    assert web_get(f"{emulator.base_url}/sync/v2/jobs/x").status_code == 401


def test_unknown_ids_are_404_not_found(api: httpx.Client) -> None:
    """Show, delete and sync on ids that don't exist."""
    for method, path in (("GET", "/v2/jobs/nope"), ("DELETE", "/v2/jobs/nope"),
                         ("GET", "/v2/tasks/nope"), ("DELETE", "/v2/tasks/nope"),
                         ("GET", "/sync/v2/jobs/nope"), ("GET", "/sync/v2/tasks/nope")):
        response = api.request(method, path)
        assert response.status_code == 404, path
        assert response.json()["code"] == "NOT_FOUND"


def test_show_and_delete_a_job(api: httpx.Client) -> None:
    """Show includes tasks; delete answers 204 and removes job, tasks and download."""
    job = convert_png(api)
    shown = api.get(f"/v2/jobs/{job['id']}").json()["data"]
    assert [t["id"] for t in shown["tasks"]] == [t["id"] for t in job["tasks"]]
    url = export_url(job)
    response = api.delete(f"/v2/jobs/{job['id']}")
    assert response.status_code == 204 and response.content == b""
    assert api.get(f"/v2/jobs/{job['id']}").status_code == 404
    assert api.get(f"/v2/tasks/{job['tasks'][0]['id']}").status_code == 404
    assert web_get(url).status_code == 404


def test_list_jobs_filters_and_paginates(api: httpx.Client) -> None:
    """``filter[status]``, ``filter[tag]``, ``include=tasks``, ``per_page``/``page`` with links/meta."""
    finished = [convert_png(api, tag=f"done-{i}") for i in range(3)]
    waiting = create_job(api, tag="pending")
    listed = api.get("/v2/jobs", params={"filter[tag]": "pending"}).json()
    assert [j["id"] for j in listed["data"]] == [waiting["id"]]
    assert "tasks" not in listed["data"][0]
    with_tasks = api.get("/v2/jobs", params={"filter[tag]": "done-1", "include": "tasks"}).json()
    assert len(with_tasks["data"][0]["tasks"]) == 3
    done_ids = {j["id"] for j in api.get("/v2/jobs", params={"filter[status]": "finished"})
                .json()["data"]}
    assert done_ids == {j["id"] for j in finished}
    page1 = api.get("/v2/jobs", params={"per_page": 3}).json()
    page2 = api.get("/v2/jobs", params={"per_page": 3, "page": 2}).json()
    assert len(page1["data"]) == 3 and len(page2["data"]) == 1
    assert page1["links"]["prev"] is None and "page=2" in page1["links"]["next"]
    assert page2["links"]["next"] is None and "page=1" in page2["links"]["prev"]
    assert page1["meta"]["current_page"] == 1 and page1["meta"]["per_page"] == 3
    assert page2["meta"]["from"] == 4 and page2["meta"]["to"] == 4
    all_ids = {j["id"] for j in page1["data"] + page2["data"]}
    assert all_ids == {j["id"] for j in [*finished, waiting]}


def test_tasks_list_show_and_delete(api: httpx.Client) -> None:
    """``GET /v2/tasks`` filters by job, status and operation; delete is 204."""
    job = convert_png(api)
    other = create_job(api)
    by_job = api.get("/v2/tasks", params={"filter[job_id]": job["id"]}).json()["data"]
    assert {t["id"] for t in by_job} == {t["id"] for t in job["tasks"]}
    waiting = api.get("/v2/tasks", params={"filter[status]": "waiting",
                                           "filter[operation]": "import/upload"}).json()["data"]
    assert [t["id"] for t in waiting] == [task_named(other, "in")["id"]]
    conv = task_named(job, "convert")
    assert api.get(f"/v2/tasks/{conv['id']}").json()["data"]["status"] == "finished"
    assert api.delete(f"/v2/tasks/{conv['id']}").status_code == 204
    assert api.get(f"/v2/tasks/{conv['id']}").status_code == 404


def test_single_task_create_runs_outside_a_job(api: httpx.Client) -> None:
    """``POST /v2/{operation}``: 201, job_id null, inputs by task id."""
    raw = api.post("/v2/import/base64", json={"file": base64.b64encode(png_bytes()).decode(),
                                              "filename": "b.png"})
    assert raw.status_code == 201
    imported = raw.json()["data"]
    assert imported["job_id"] is None and imported["operation"] == "import/base64"
    conv = api.post("/v2/convert", json={"input": imported["id"], "output_format": "webp"})
    assert conv.status_code == 201
    done = api.get(f"/sync/v2/tasks/{conv.json()['data']['id']}").json()["data"]
    assert done["status"] == "finished" and done["result"]["files"][0]["filename"] == "b.webp"
    bad = api.post("/v2/convert", json={"input": "ghost", "output_format": "png"})
    assert bad.status_code == 422 and "input" in bad.json()["errors"]
    assert api.post("/v2/no/such-operation", json={}).status_code == 404


def test_import_raw_and_url_thumbnail_archive(api: httpx.Client) -> None:
    """The other operations: raw text, a URL served by the emulator, thumbnail, zip archive."""
    first = convert_png(api, "one.png")
    tasks = {
        "raw": {"operation": "import/raw", "file": "hello", "filename": "note.txt"},
        "url": {"operation": "import/url", "url": export_url(first), "filename": "one.jpg"},
        "thumb": {"operation": "thumbnail", "input": "url", "output_format": "png",
                  "width": 16, "height": 16, "fit": "crop"},
        "zip": {"operation": "archive", "input": ["raw", "url", "thumb"], "output_format": "zip"},
        "out": {"operation": "export/url", "input": ["zip", "thumb"]},
    }
    job = wait_job(api, create_job(api, tasks)["id"])
    assert job["status"] == "finished", [(t["name"], t["code"], t["message"]) for t in job["tasks"]]
    files = task_named(job, "out")["result"]["files"]
    assert [f["filename"] for f in files] == ["archive.zip", "one.png"]
    with zipfile.ZipFile(io.BytesIO(web_get(files[0]["url"]).content)) as zf:
        assert sorted(zf.namelist()) == ["note.txt", "one.jpg", "one.png"]
        assert zf.read("note.txt") == b"hello"
    with Image.open(io.BytesIO(web_get(files[1]["url"]).content)) as thumb:
        assert thumb.size == (16, 16)


def test_import_url_refuses_foreign_urls(api: httpx.Client) -> None:
    """No network: only the emulator's own download URLs can be imported."""
    tasks = {"u": {"operation": "import/url", "url": "https://example.com/a.png"}}
    job = wait_job(api, create_job(api, tasks)["id"])
    assert job["status"] == "error" and task_named(job, "u")["code"] == "IMPORT_FAILED"


def test_corrupt_input_fails_and_dependants_get_input_task_failed(api: httpx.Client) -> None:
    """The root task carries the engine's code; its dependants INPUT_TASK_FAILED."""
    job = create_job(api)
    upload(job, "broken.png", b"not a png at all")
    done = wait_job(api, job["id"])
    assert done["status"] == "error"
    conv, out = task_named(done, "convert"), task_named(done, "out")
    assert conv["status"] == "error" and conv["code"] == "CONVERSION_FAILED" and conv["message"]
    assert out["code"] == "INPUT_TASK_FAILED" and out["message"] == "Input task has failed"


def test_unsupported_pair_found_at_run_time_fails_the_task(api: httpx.Client) -> None:
    """Without ``input_format`` the pair is only known once the file arrived."""
    tasks = {**TO_JPG, "convert": {**TO_JPG["convert"], "output_format": "mp3"}}
    job = create_job(api, tasks)
    upload(job, "a.png", png_bytes())
    assert task_named(wait_job(api, job["id"]), "convert")["code"] == "INVALID_CONVERSION_TYPE"


def test_same_format_is_a_byte_copy(api: httpx.Client) -> None:
    """Any format converts to itself by copying, without decoding."""
    tasks = {**TO_JPG, "convert": {**TO_JPG["convert"], "output_format": "bin"}}
    job = create_job(api, tasks)
    payload = bytes(range(256)) * 100
    upload(job, "blob.bin", payload)
    done = wait_job(api, job["id"])
    assert task_named(done, "convert")["engine"] == "copy"
    assert web_get(export_url(done)).content == payload


def test_sync_wait_blocks_until_the_job_ends(emulator: Emulator, api: httpx.Client) -> None:
    """The sync host returns only once the job is finished (latency keeps it busy first)."""
    emulator.latency_s = 0.3
    job = create_job(api)
    upload(job, "a.png", png_bytes())
    started = time.monotonic()
    done = wait_job(api, job["id"])
    assert done["status"] == "finished" and time.monotonic() - started >= 0.25
    conv = task_named(done, "convert")
    start = dt.datetime.fromisoformat(conv["started_at"])
    assert dt.datetime.fromisoformat(conv["ended_at"]) >= start


def test_sync_wait_returns_the_current_state_at_the_cap(api_key: str) -> None:
    """A job that never ends comes back (still waiting) after the server's cap."""
    from ccwatch.emulator import serve

    with Emulator(api_key=api_key, sync_wait_cap_s=0.2) as emu, serve(emu), client(emu) as api:
        job = create_job(api)
        assert wait_job(api, job["id"])["status"] == "waiting"
        upload_task = task_named(job, "in")["id"]
        assert api.get(f"/sync/v2/tasks/{upload_task}").json()["data"]["status"] == "waiting"


def test_cancel_and_retry(api: httpx.Client) -> None:
    """Cancel fails a waiting task (dependants too); retry makes a new task pointing back."""
    job = create_job(api)
    up = task_named(job, "in")
    cancelled = api.post(f"/v2/tasks/{up['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["data"]["status"] == "error"
    done = api.get(f"/v2/jobs/{job['id']}").json()["data"]
    assert done["status"] == "error"
    assert task_named(done, "convert")["code"] == "INPUT_TASK_FAILED"
    again = api.post(f"/v2/tasks/{up['id']}/cancel")
    assert again.status_code == 422 and again.json()["code"] == "INVALID_DATA"
    retried = api.post(f"/v2/tasks/{up['id']}/retry")
    assert retried.status_code == 201
    new = retried.json()["data"]
    assert new["retry_of_task_id"] == up["id"] and new["status"] == "waiting"
    assert new["result"]["form"]["parameters"]["key"].startswith(new["id"])


def test_formats_lists_what_the_engines_do(api: httpx.Client, emulator: Emulator) -> None:
    """Pillow pairs are always there; filters narrow the list."""
    everything = api.get("/v2/convert/formats").json()["data"]
    pairs = {(f["input_format"], f["output_format"]) for f in everything}
    for pair in (("png", "jpg"), ("jpg", "png"), ("webp", "pdf"), ("tiff", "gif"), ("bmp", "png")):
        assert pair in pairs
    only = api.get("/v2/convert/formats", params={"filter[input_format]": "png",
                                                   "filter[output_format]": "pdf"}).json()["data"]
    assert [(f["input_format"], f["output_format"], f["engine"]) for f in only] == \
        [("png", "pdf", "pillow")]
    assert web_get(f"{emulator.base_url}/v2/convert/formats").status_code == 200  # public


def test_users_me(api: httpx.Client) -> None:
    """The account: id, username, email, credits, links."""
    me = api.get("/v2/users/me").json()["data"]
    assert {"id", "username", "email", "credits", "created_at", "links"} <= set(me)


def test_python_api_lists_jobs_and_counts_requests(emulator: Emulator, api: httpx.Client) -> None:
    """``jobs()``, ``requests`` and ``count()`` as the daemon's tests read them."""
    job = convert_png(api)
    assert [j["id"] for j in emulator.jobs()] == [job["id"]]
    assert emulator.jobs()[0]["tasks"][1]["status"] == "finished"
    assert emulator.count("POST", "/v2/jobs") == 1
    assert emulator.count("GET", "/sync/v2/jobs/*") == 1
    last = emulator.requests[-1]
    assert (last.method, last.status) == ("GET", 200) and last.path.startswith("/sync/v2/jobs/")


def test_sync_create_and_wait_with_redirect(api: httpx.Client) -> None:
    """``POST /sync/v2/jobs`` returns the ended job, or 302 to the first export with redirect."""
    tasks = {"in": {"operation": "import/base64", "file": base64.b64encode(png_bytes()).decode(),
                    "filename": "s.png"},
             "convert": {"operation": "convert", "input": "in", "output_format": "gif"},
             "out": {"operation": "export/url", "input": "convert"}}
    ended = api.post("/sync/v2/jobs", json={"tasks": tasks})
    assert ended.status_code == 201 and ended.json()["data"]["status"] == "finished"
    redirected = api.post("/sync/v2/jobs", json={"tasks": tasks, "redirect": True})
    assert redirected.status_code == 302
    with Image.open(io.BytesIO(web_get(redirected.headers["location"]).content)) as img:
        assert img.format == "GIF"


def test_operations_lists_thumbnail_archive_and_imports(api: httpx.Client) -> None:
    """``GET /v2/operations`` with ``filter[operation]``."""
    thumbs = api.get("/v2/operations", params={"filter[operation]": "thumbnail"}).json()["data"]
    assert thumbs and {t["output_format"] for t in thumbs} >= {"png", "jpg"}
    names = {o["operation"] for o in api.get("/v2/operations").json()["data"]}
    assert {"convert", "archive", "import/upload", "export/url"} <= names


def test_serve_builds_and_closes_its_own_emulator() -> None:
    """``serve(**kwargs)`` without an Emulator makes one from the kwargs."""
    from ccwatch.emulator import serve

    with serve(api_key="own-key") as base:
        assert re.match(r"^http://127\.0\.0\.1:\d+$", base)
        me = web_get(f"{base}/v2/users/me", headers={"Authorization": "Bearer own-key"})
        assert me.status_code == 200
