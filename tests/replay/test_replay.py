"""Replay of real CloudConvert exchanges against the emulator.

``fixtures/`` holds exchanges recorded from the real service (the Ruby SDK's VCR cassettes of the
sandbox, Dec 2020) and the other SDKs' response fixtures, each with its source (repo, path,
commit). Each test makes the same kind of request to the emulator and compares what a client
reads: status, media type, the headers that carry meaning (rate limits, ETag, Location,
Content-Disposition), every JSON key (none missing, none extra), every value's type, and the
values of the keys a client branches on. Where the emulator knowingly differs, ``ALLOWED``
says why.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ccwatch.emulator import Emulator
from ccwatch.testing import wait_for

FIXTURES = Path(__file__).parent / "fixtures"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
# Keys whose values a client branches on: they must be equal, not only of the same type.
VALUE_KEYS = frozenset({"status", "operation", "percent", "message", "code", "name", "job_id",
                        "acl", "success_action_status", "X-Amz-Algorithm", "credits",
                        "current_page", "per_page", "errors", "filename"})
# Keys that are null or not depending on timing or on the worker that ran the task.
NULLABLE = frozenset({"started_at", "ended_at", "host_name", "credits", "tag", "last", "prev",
                      "next", "from", "to"})
# Known, deliberate differences: (where, key) → why.
ALLOWED = {
    ("data[]", "tag"): "list items carry the tag ccwatch adopts jobs by; the 2019 PHP fixture "
                       "predates tags on jobs (the 2020 recorded create has one)",
}
BODY = b"%PDF-1.4 a stand-in for the recorded input.pdf\n"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    source = data["source"]
    assert source["repo"].startswith("cloudconvert/") and len(source["commit"]) == 40
    return data


def recorded(name: str, method: str, host: str, path: str) -> dict[str, Any]:
    """The first recorded exchange of that kind (``path`` is a regular expression)."""
    for exchange in fixture(name)["exchanges"]:
        request = exchange["request"]
        if (request["method"], request["host"]) == (method, host) and \
                re.fullmatch(path, request["path"]):
            result: dict[str, Any] = exchange
            return result
    raise LookupError(f"{name}: no {method} {host} {path}")


def _values_differ(key: str, real: Any, ours: Any) -> bool:
    if key not in VALUE_KEYS:
        return False
    if key == "job_id":  # ids differ; in a job or alone must not
        return (real is None) != (ours is None)
    if key == "credits" and None in (real, ours):  # set when the task finishes: timing
        return False
    return bool(real != ours)


def differences(real: Any, ours: Any, where: str = "", key: str = "") -> list[str]:
    """What a client would notice: missing or extra keys, other types, other branch values."""
    here = f"{where}.{key}" if key else where or "body"
    if _values_differ(key, real, ours):
        return [f"{here}: {ours!r} where the real service sends {real!r}"]
    if real is None or ours is None:
        if real is ours or key in NULLABLE:
            return []
        return [f"{here}: {ours!r} where the real service sends {real!r}"]
    if isinstance(real, dict):
        if not isinstance(ours, dict):
            return [f"{here}: {type(ours).__name__} instead of an object"]
        found = [f"{here}: key {k!r} missing" for k in real.keys() - ours.keys()]
        found += [f"{here}: extra key {k!r}" for k in ours.keys() - real.keys()
                  if (where.split(".")[-1] if where else "", k) not in ALLOWED
                  and (key, k) not in ALLOWED]
        for k in real.keys() & ours.keys():
            found += differences(real[k], ours[k], here, k)
        return found
    if isinstance(real, list):
        if not isinstance(ours, list):
            return [f"{here}: {type(ours).__name__} instead of a list"]
        if real and ours:
            return differences(real[0], ours[0], where, f"{key}[]")
        return []
    if type(real) is not type(ours):
        return [f"{here}: {type(ours).__name__} {ours!r} where the real service sends "
                f"{type(real).__name__} {real!r}"]
    if isinstance(real, str) and UUID.match(real) and not UUID.match(ours):
        return [f"{here}: {ours!r} is not a UUID"]
    if isinstance(real, str) and ISO.match(real) and not ISO.match(ours):
        return [f"{here}: {ours!r} is not an ISO timestamp like {real!r}"]
    return []


def media_type(headers: Any) -> str | None:
    value = headers.get("content-type")
    return None if value is None else value.split(";")[0].strip()


def assert_same(exchange: dict[str, Any], response: httpx.Response) -> None:
    """Status, media type, rate-limit headers present or absent alike, and the JSON."""
    real = exchange["response"]
    assert response.status_code == real["status"]
    assert media_type(response.headers) == media_type(real["headers"])
    real_type, our_type = real["headers"].get("content-type"), response.headers.get("content-type")
    assert (real_type is None) == (our_type is None)
    if real_type and "charset" in real_type:
        assert our_type is not None and "charset=utf-8" in our_type
    for header in ("x-ratelimit-limit", "x-ratelimit-remaining"):
        assert (header in response.headers) == (header in real["headers"]), header
    if "x-ratelimit-limit" in real["headers"]:
        assert response.headers["x-ratelimit-limit"] == real["headers"]["x-ratelimit-limit"]
    if "json" in real:
        assert differences(real["json"], response.json()) == []
    elif "empty" in real:
        assert response.content == b""


@pytest.fixture
def hosts(emulator: Emulator) -> Iterator[dict[str, httpx.Client]]:
    """Plain clients for the three hosts (the sync host is a path prefix on the emulator)."""
    auth = {"Authorization": f"Bearer {emulator.api_key}"}
    with httpx.Client(base_url=emulator.base_url or "", headers=auth) as api, \
            httpx.Client(base_url=f"{emulator.base_url}/sync", headers=auth) as sync, \
            httpx.Client() as storage:
        yield {"api": api, "sync": sync, "storage": storage}


def _upload(hosts: dict[str, httpx.Client], form: dict[str, Any]) -> httpx.Response:
    return hosts["storage"].post(form["url"], data=form["parameters"],
                                 files={"file": ("input.pdf", BODY)})


JOB = "ruby-performs_upload_and_download_of_file"
UPLOAD_TASK = "ruby-performs_import_upload_task"
URL_TASK = "ruby-performs_import_url_task"


def test_a_job_with_an_upload_and_an_export(hosts: dict[str, httpx.Client]) -> None:
    """Create → read the upload task → upload → wait for the export → download → delete."""
    api, sync = hosts["api"], hosts["sync"]
    create = recorded(JOB, "POST", "api", "/v2/jobs")
    created = api.post("/v2/jobs", json=create["request"]["json"])
    assert_same(create, created)
    job = created.json()["data"]
    upload_task, export_task = job["tasks"]
    real_form = create["response"]["json"]["data"]["tasks"][0]["result"]["form"]
    assert list(upload_task["result"]["form"]["parameters"]) == list(real_form["parameters"])

    read = api.get(f"/v2/tasks/{upload_task['id']}")
    assert_same(recorded(JOB, "GET", "api", "/v2/tasks/.*"), read)
    assert read.json()["data"]["result"] == upload_task["result"]  # the same form (recorded)

    post = recorded(UPLOAD_TASK, "POST", "storage", "/tasks-sandbox")
    assert post["request"]["form_fields"] == [*real_form["parameters"], "file"]
    uploaded = _upload(hosts, upload_task["result"]["form"])
    assert_same(post, uploaded)
    md5 = hashlib.md5(BODY, usedforsecurity=False).hexdigest()
    assert uploaded.headers["etag"] == f'"{md5}"' and "location" in uploaded.headers
    def tags(xml: str) -> str:
        return re.sub(r">[^<]*<", "><", xml)

    assert tags(uploaded.text) == tags(post["response"]["xml"])  # the same elements, in order

    waited = sync.get(f"/v2/tasks/{export_task['id']}")
    assert_same(recorded(JOB, "GET", "sync", "/v2/tasks/.*"), waited)

    download = recorded(JOB, "GET", "storage", "/tasks-sandbox/.*")
    url = waited.json()["data"]["result"]["files"][0]["url"]
    got = hosts["storage"].get(url)
    assert got.status_code == download["response"]["status"]
    real_headers = download["response"]["headers"]
    assert got.headers["content-type"] == real_headers["content-type"]  # application/pdf
    assert got.headers["content-disposition"] == real_headers["content-disposition"]
    assert got.headers["etag"] == f'"{md5}"' and int(got.headers["content-length"]) == len(BODY)
    assert real_headers["etag"] == f'"{download["response"]["file"]["md5"]}"'

    deleted = api.delete(f"/v2/jobs/{job['id']}")
    assert_same(recorded(JOB, "DELETE", "api", "/v2/jobs/.*"), deleted)


def test_a_single_upload_task(hosts: dict[str, httpx.Client]) -> None:
    """``POST /v2/import/upload`` (no job, no name), upload, the finished task, delete."""
    api, sync = hosts["api"], hosts["sync"]
    create = recorded(UPLOAD_TASK, "POST", "api", "/v2/import/upload")
    created = api.post("/v2/import/upload", json=create["request"]["json"])
    assert_same(create, created)
    task = created.json()["data"]
    assert _upload(hosts, task["result"]["form"]).status_code == 201
    assert_same(recorded(UPLOAD_TASK, "GET", "sync", "/v2/tasks/.*"),
                sync.get(f"/v2/tasks/{task['id']}"))
    assert_same(recorded(UPLOAD_TASK, "DELETE", "api", "/v2/tasks/.*"),
                api.delete(f"/v2/tasks/{task['id']}"))


def test_a_single_url_import(hosts: dict[str, httpx.Client], emulator: Emulator) -> None:
    """``POST /v2/import/url`` waits, then finishes with the file's md5 (the emulator imports
    only its own export URLs: one is made first)."""
    api, sync = hosts["api"], hosts["sync"]
    job = api.post("/v2/jobs", json=recorded(JOB, "POST", "api", "/v2/jobs")["request"]["json"])
    upload_task, export_task = job.json()["data"]["tasks"]
    _upload(hosts, upload_task["result"]["form"])
    url = sync.get(f"/v2/tasks/{export_task['id']}").json()["data"]["result"]["files"][0]["url"]

    create = recorded(URL_TASK, "POST", "api", "/v2/import/url")
    created = api.post("/v2/import/url", json={**create["request"]["json"], "url": url})
    assert_same(create, created)
    task_id = created.json()["data"]["id"]
    assert_same(recorded(URL_TASK, "GET", "sync", "/v2/tasks/.*"), sync.get(f"/v2/tasks/{task_id}"))
    assert_same(recorded(URL_TASK, "DELETE", "api", "/v2/tasks/.*"),
                api.delete(f"/v2/tasks/{task_id}"))


def test_users_me_has_no_rate_limit_headers(hosts: dict[str, httpx.Client]) -> None:
    assert_same(recorded("ruby-performs_user_query", "GET", "api", "/v2/users/me"),
                hosts["api"].get("/v2/users/me"))


def test_error_bodies(hosts: dict[str, httpx.Client], emulator: Emulator) -> None:
    """401 (Java SDK test), 422 on cancelling a finished task and 402 (PHP SDK fixtures)."""
    unauthenticated = fixture("java-unauthenticated")
    answer = httpx.get(f"{emulator.base_url}/v2/users/me", headers={"Authorization": "Bearer x"})
    assert answer.status_code == unauthenticated["status"]
    assert answer.json() == unauthenticated["body"]

    api, sync = hosts["api"], hosts["sync"]
    task = api.post("/v2/import/upload", json={}).json()["data"]
    _upload(hosts, task["result"]["form"])
    wait_for(lambda: sync.get(f"/v2/tasks/{task['id']}").json()["data"]["status"] == "finished",
             message="the upload task to finish")
    refused = api.post(f"/v2/tasks/{task['id']}/cancel")
    assert refused.status_code == 422
    assert refused.json() == fixture("php-error400")["body"]

    emulator.faults.credits_exceeded(times=1)
    exceeded = api.post("/v2/jobs", json={"tasks": {"in": {"operation": "import/upload"}}})
    assert exceeded.status_code == 402 and exceeded.json() == fixture("php-error402")["body"]


def test_job_list_pagination(hosts: dict[str, httpx.Client]) -> None:
    """``GET /v2/jobs``: data, links and meta as the PHP fixture has them."""
    hosts["api"].post("/v2/jobs", json={"tasks": {"in": {"operation": "import/upload"}}})
    listed = hosts["api"].get("/v2/jobs")
    assert listed.status_code == 200
    assert differences(fixture("php-jobs")["body"], listed.json()) == []


def test_the_comparison_catches_what_a_client_would_trip_on() -> None:
    """The checker itself: extra and missing keys, other types, other statuses all count."""
    real = {"data": {"id": "6f1d2c1e-1b1a-4c3e-8d5e-9f0a1b2c3d4e", "status": "waiting",
                     "result": None, "created_at": "2020-12-17T04:36:08+00:00"}}
    same = json.loads(json.dumps(real))
    assert differences(real, same) == []
    assert differences(real, {"data": {**same["data"], "webhook_url": None}}) == [
        "body.data: extra key 'webhook_url'"]
    assert differences(real, {"data": {**same["data"], "status": "queued"}}) != []
    assert differences(real, {"data": {**same["data"], "result": {}}}) != []
    assert differences(real, {"data": {**same["data"], "created_at": "2020-12-17 04:36"}}) != []
    missing = dict(same["data"])
    del missing["result"]
    assert differences(real, {"data": missing}) == ["body.data: key 'result' missing"]
