"""The API's endpoints: ``(emulator, request, **url args) -> Response``; app.py does auth and faults."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from ccwatch.emulator import manage
from ccwatch.emulator.engines import ARCHIVE_OUT, PIL_IN, THUMBNAIL_OUT, Conversion
from ccwatch.emulator.store import USER_ID, Webhook, new_id
from ccwatch.emulator.validation import OPERATIONS, Invalid, is_url

if TYPE_CHECKING:
    from ccwatch.emulator.core import Emulator

EVENTS = ("job.created", "job.finished", "job.failed")
CREATES = frozenset({"create_job", "create_task", "sync_create_job"})


SYNC_TYPE = "application/json; charset=utf-8"  # the sync host is another service (recorded)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> Response:
    return Response(json.dumps(data), status=status, headers=headers, content_type=content_type)


def no_content() -> Response:
    """204 with no body and no Content-Type, as the API answers deletes."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


def error(status: int, message: str, code: str | None = None,
          headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"message": message}
    if code is not None:
        body["code"] = code
    return json_response(body, status, headers)


def not_found(what: str) -> Response:
    return error(404, f"{what} not found", "NOT_FOUND")


class BadJson(Exception):
    pass


def body_of(request: Request) -> Any:
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadJson(str(exc)) from exc


def paginate(emu: Emulator, request: Request, items: list[Any]) -> Response:
    """Laravel's simple pagination, as the API answers lists."""
    try:
        per_page = min(max(int(request.args.get("per_page", 100)), 1), 1000)
        page = max(int(request.args.get("page", 1)), 1)
    except ValueError:
        raise Invalid({"page": ["The page and per_page must be integers."]}) from None
    start = (page - 1) * per_page
    chunk = items[start:start + per_page]
    path = f"{emu.base_url}{request.path}"
    query = [(k, v) for k, v in request.args.items(multi=True) if k != "page"]

    def link(n: int) -> str:
        return f"{path}?{urlencode([*query, ('page', str(n))])}"

    return json_response({
        "data": chunk,
        "links": {"first": link(1), "last": None,
                  "prev": link(page - 1) if page > 1 else None,
                  "next": link(page + 1) if start + per_page < len(items) else None},
        "meta": {"current_page": page, "from": start + 1 if chunk else None, "path": path,
                 "per_page": per_page, "to": start + len(chunk) if chunk else None},
    })


def create_job(emu: Emulator, request: Request) -> Response:
    return json_response({"data": emu.create_job(body_of(request))}, 201)


def create_task(emu: Emulator, request: Request, operation: str) -> Response:
    if operation not in OPERATIONS:
        return not_found("Operation")
    return json_response({"data": emu.create_task(operation, body_of(request))}, 201)


def includes(request: Request) -> frozenset[str]:
    return frozenset(request.args.get("include", "").split(","))


def list_jobs(emu: Emulator, request: Request) -> Response:
    status, tag = request.args.get("filter[status]"), request.args.get("filter[tag]")
    with_tasks = "tasks" in includes(request)
    with emu.store.lock:
        shapes = emu.shapes(includes(request))
        jobs = [shapes.job(j, with_tasks=with_tasks) for j in reversed(emu.store.jobs.values())
                if (status is None or j.status == status) and (tag is None or j.tag == tag)]
    return paginate(emu, request, jobs)


def show_job(emu: Emulator, request: Request, job_id: str) -> Response:
    with emu.store.lock:
        job = emu.store.jobs.get(job_id)
        return not_found("Job") if job is None else json_response(
            {"data": emu.shapes(includes(request)).job(job)})


def delete_job(emu: Emulator, request: Request, job_id: str) -> Response:
    return no_content() if manage.delete_job(emu, job_id) else not_found("Job")


def list_tasks(emu: Emulator, request: Request) -> Response:
    wanted = {k: request.args.get(f"filter[{k}]") for k in ("job_id", "status", "operation")}
    with emu.store.lock:
        shapes = emu.shapes(includes(request))
        tasks = [shapes.task(t) for t in reversed(emu.store.tasks.values())
                 if all(v is None or getattr(t, k) == v for k, v in wanted.items())]
    return paginate(emu, request, tasks)


def show_task(emu: Emulator, request: Request, task_id: str) -> Response:
    with emu.store.lock:
        task = emu.store.tasks.get(task_id)
        if task is None:
            return not_found("Task")
        manage.renew_form_if_expired(emu, task)
        return json_response({"data": emu.shapes(includes(request)).task(task)})


def delete_task(emu: Emulator, request: Request, task_id: str) -> Response:
    return no_content() if manage.delete_task(emu, task_id) else not_found("Task")


def cancel_task(emu: Emulator, request: Request, task_id: str) -> Response:
    shape = manage.cancel_task(emu, task_id)
    return not_found("Task") if shape is None else json_response({"data": shape})


def retry_task(emu: Emulator, request: Request, task_id: str) -> Response:
    shape = manage.retry_task(emu, task_id)
    return not_found("Task") if shape is None else json_response({"data": shape}, 201)


def sync_job(emu: Emulator, request: Request, job_id: str) -> Response:
    shape = manage.wait_job(emu, job_id)
    return not_found("Job") if shape is None else json_response({"data": shape},
                                                                content_type=SYNC_TYPE)


def sync_task(emu: Emulator, request: Request, task_id: str) -> Response:
    shape = manage.wait_task(emu, task_id)
    return not_found("Task") if shape is None else json_response({"data": shape},
                                                                 content_type=SYNC_TYPE)


def sync_create_job(emu: Emulator, request: Request) -> Response:
    """Create and wait; ``redirect: true`` answers 302 to the first exported file."""
    body = body_of(request)
    created = emu.create_job(body)
    shape = manage.wait_job(emu, created["id"]) or created
    if isinstance(body, dict) and body.get("redirect") and shape["status"] == "finished":
        for task in shape["tasks"]:
            if task["operation"] == "export/url" and task["result"]["files"]:
                return Response(status=302, headers={"Location": task["result"]["files"][0]["url"]})
    return json_response({"data": shape}, 201)


def user(emu: Emulator, request: Request) -> Response:
    return json_response({"data": {
        "id": USER_ID, "username": "emulator", "email": "emulator@example.invalid",
        "created_at": "2020-01-01T00:00:00+00:00", "credits": emu.credits, "paying": False,
        "task_priority": None, "tasks_per_minute": None,
        "links": {"self": f"{emu.base_url}/v2/users/{USER_ID}"}}})


def list_webhooks(emu: Emulator, request: Request) -> Response:
    url = request.args.get("filter[url]")
    with emu.store.lock:
        shapes = emu.shapes()
        hooks = [shapes.webhook(h, emu.webhook_secret) for h in emu.store.webhooks.values()
                 if url is None or h.url == url]
    return paginate(emu, request, hooks)


def create_webhook(emu: Emulator, request: Request) -> Response:
    body = body_of(request)
    errors: dict[str, list[str]] = {}
    if not isinstance(body, dict) or not is_url(body.get("url")):
        errors["url"] = ["The url format is invalid."]
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list) or not events or any(e not in EVENTS for e in events):
        errors["events"] = [f"The events must be a non-empty list of {', '.join(EVENTS)}."]
    if errors:
        raise Invalid(errors)
    hook = Webhook(id=new_id(), url=body["url"], events=list(events or []),
                   created_at=emu.clock.wall())
    with emu.store.lock:
        emu.store.webhooks[hook.id] = hook
        return json_response({"data": emu.shapes().webhook(hook, emu.webhook_secret)}, 201)


def delete_webhook(emu: Emulator, request: Request, webhook_id: str) -> Response:
    with emu.store.lock:
        gone = emu.store.webhooks.pop(webhook_id, None)
    return not_found("Webhook") if gone is None else no_content()


def _filtered(request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    wanted = {k: request.args.get(f"filter[{k}]")
              for k in ("operation", "input_format", "output_format", "engine")}
    return [i for i in items if all(v is None or i.get(k) == v for k, v in wanted.items())]


def formats(emu: Emulator, request: Request) -> Response:
    return json_response({"data": _filtered(request, [c.shape() for c in
                                                      emu.engines.conversions()])})


def operations(emu: Emulator, request: Request) -> Response:
    items = [c.shape() for c in emu.engines.conversions()]
    items += [Conversion(f, o, "pillow", "").shape("thumbnail") for f in PIL_IN
              for o in THUMBNAIL_OUT]
    items += [Conversion("*", o, "archive", "1").shape("archive") for o in ARCHIVE_OUT]
    items += [{"operation": op, "credits": 0} for op in sorted(OPERATIONS)
              if op.startswith(("import/", "export/"))]
    return json_response({"data": _filtered(request, items)})


Handler = Callable[..., Response]
HANDLERS: dict[str, Handler] = {f.__name__: f for f in (
    create_job, create_task, list_jobs, show_job, delete_job, list_tasks, show_task, delete_task,
    cancel_task, retry_task, sync_job, sync_task, sync_create_job, user, list_webhooks,
    create_webhook, delete_webhook, formats, operations)}

URLS = Map([
    Rule("/v2/jobs", methods=["GET"], endpoint="list_jobs"),
    Rule("/v2/jobs", methods=["POST"], endpoint="create_job"),
    Rule("/v2/jobs/<job_id>", methods=["GET"], endpoint="show_job"),
    Rule("/v2/jobs/<job_id>", methods=["DELETE"], endpoint="delete_job"),
    Rule("/v2/tasks", methods=["GET"], endpoint="list_tasks"),
    Rule("/v2/tasks/<task_id>", methods=["GET"], endpoint="show_task"),
    Rule("/v2/tasks/<task_id>", methods=["DELETE"], endpoint="delete_task"),
    Rule("/v2/tasks/<task_id>/cancel", methods=["POST"], endpoint="cancel_task"),
    Rule("/v2/tasks/<task_id>/retry", methods=["POST"], endpoint="retry_task"),
    Rule("/v2/users/me", methods=["GET"], endpoint="user"),
    Rule("/v2/users/me/webhooks", methods=["GET"], endpoint="list_webhooks"),
    Rule("/v2/webhooks", methods=["POST"], endpoint="create_webhook"),
    Rule("/v2/webhooks/<webhook_id>", methods=["DELETE"], endpoint="delete_webhook"),
    Rule("/v2/convert/formats", methods=["GET"], endpoint="formats"),
    Rule("/v2/operations", methods=["GET"], endpoint="operations"),
    Rule("/v2/<path:operation>", methods=["POST"], endpoint="create_task"),
    Rule("/sync/v2/jobs", methods=["POST"], endpoint="sync_create_job"),
    Rule("/sync/v2/jobs/<job_id>", methods=["GET"], endpoint="sync_job"),
    Rule("/sync/v2/tasks/<task_id>", methods=["GET"], endpoint="sync_task"),
], strict_slashes=False, merge_slashes=False)
