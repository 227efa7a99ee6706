"""Request validation answered like the API: 422 INVALID_DATA (per-field errors), INVALID_CONVERSION_TYPE."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import urlsplit

from ccwatch.emulator.engines import ARCHIVE_OUT, FITS, THUMBNAIL_OUT, Engines, format_of, norm

TASK_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
FORMAT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.]{0,15}$")
NEEDS_INPUT = frozenset({"convert", "thumbnail", "archive", "export/url"})
OPERATIONS = frozenset({"import/upload", "import/url", "import/base64", "import/raw"}) | NEEDS_INPUT

Errors = dict[str, list[str]]


class Invalid(Exception):
    """422 with the API's body; ``code`` is INVALID_DATA or INVALID_CONVERSION_TYPE."""

    def __init__(self, errors: Errors | None = None, code: str = "INVALID_DATA",
                 message: str = "The given data was invalid.") -> None:
        super().__init__(message)
        self.errors = errors or {}
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.code == "INVALID_DATA":
            body["errors"] = self.errors
        return body


def inputs_of(task: dict[str, Any]) -> list[str]:
    raw = task.get("input")
    if raw is None:
        return []
    return [raw] if isinstance(raw, str) else list(raw)


def is_url(value: Any) -> bool:
    if not isinstance(value, str) or " " in value:
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def check_task(task: Any, prefix: str, known_inputs: set[str], errors: Errors) -> None:
    """Field checks shared by job tasks (``prefix`` "tasks.NAME.") and single tasks (prefix "")."""
    if not isinstance(task, dict):
        errors[prefix.rstrip(".") or "task"] = ["The task must be an object."]
        return
    op = task.get("operation")
    if op not in OPERATIONS:
        errors[f"{prefix}operation"] = ["The selected operation is invalid."]
        return
    raw_input = task.get("input")
    if raw_input is not None and not (
        isinstance(raw_input, str)
        or (isinstance(raw_input, list) and all(isinstance(i, str) for i in raw_input))
    ):
        errors[f"{prefix}input"] = ["The input must be a task name or a list of task names."]
        return
    names = inputs_of(task)
    if op in NEEDS_INPUT and not names:
        errors[f"{prefix}input"] = ["The input field is required."]
    elif any(n not in known_inputs for n in names):
        errors[f"{prefix}input"] = ["Invalid input task."]
    _check_operation_fields(op, task, prefix, errors)


def _check_operation_fields(op: str, task: dict[str, Any], prefix: str, errors: Errors) -> None:
    def need_str(key: str) -> None:
        if not isinstance(task.get(key), str) or not task[key]:
            errors[f"{prefix}{key}"] = [f"The {key} field is required."]

    if op in ("convert", "thumbnail", "archive"):
        need_str("output_format")
        fmt = task.get("output_format")
        allowed = {"thumbnail": THUMBNAIL_OUT, "archive": ARCHIVE_OUT}.get(op)
        if isinstance(fmt, str) and fmt and (
            not FORMAT.match(fmt) or (allowed is not None and norm(fmt) not in allowed)
        ):
            errors[f"{prefix}output_format"] = ["The selected output format is invalid."]
    if op == "thumbnail":
        _check_thumbnail(task, prefix, errors)
    if op in ("import/base64", "import/raw"):
        need_str("file")
        need_str("filename")
        if op == "import/base64" and isinstance(task.get("file"), str):
            try:
                base64.b64decode(task["file"], validate=True)
            except (binascii.Error, ValueError):
                errors[f"{prefix}file"] = ["The file must be valid base64."]
    if op == "import/url" and not is_url(task.get("url")):
        errors[f"{prefix}url"] = ["The url format is invalid."]
    if "filename" in task and op not in ("import/base64", "import/raw") and not (
        task["filename"] is None or isinstance(task["filename"], str)
    ):
        errors[f"{prefix}filename"] = ["The filename must be a string."]


def _check_thumbnail(task: dict[str, Any], prefix: str, errors: Errors) -> None:
    for key in ("width", "height"):
        value = task.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            errors[f"{prefix}{key}"] = [f"The {key} must be a positive integer."]
    if task.get("fit") is not None and task.get("fit") not in FITS:
        errors[f"{prefix}fit"] = ["The selected fit is invalid."]


def validate_job(body: Any, engines: Engines) -> dict[str, dict[str, Any]]:
    """The job's tasks, each with ``input`` normalised to a list; raises Invalid."""
    errors: Errors = {}
    if not isinstance(body, dict):
        raise Invalid({"tasks": ["The tasks field is required."]})
    tasks = body.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise Invalid({"tasks": ["The tasks field is required."]})
    for key in ("tag", "webhook_url"):
        if body.get(key) is not None and not isinstance(body[key], str):
            errors[key] = [f"The {key} must be a string."]
    if isinstance(body.get("webhook_url"), str) and not is_url(body["webhook_url"]):
        errors["webhook_url"] = ["The webhook url format is invalid."]
    names = set(tasks)
    for name, task in tasks.items():
        if not TASK_NAME.match(name):
            errors[f"tasks.{name}"] = [
                "The task name may only contain letters, numbers, dashes and underscores."]
            continue
        check_task(task, f"tasks.{name}.", names - {name}, errors)
    if not errors:
        cycle = _find_cycle({n: inputs_of(t) for n, t in tasks.items()})
        if cycle:
            errors[f"tasks.{cycle}.input"] = ["The tasks have a circular dependency."]
    if errors:
        raise Invalid(errors)
    normalised = {n: {**t, "input": inputs_of(t)} if "input" in t else dict(t)
                  for n, t in tasks.items()}
    for task in normalised.values():
        check_conversion(task, _static_formats(task, normalised), engines)
    return normalised


def _find_cycle(graph: dict[str, list[str]]) -> str | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str) -> str | None:
        state[node] = 1
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return node
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (found := visit(node)):
            return found
    return None


def _static_formats(task: dict[str, Any], tasks: dict[str, dict[str, Any]]) -> list[str]:
    """Input formats known at creation: imports that name their file, or convert outputs."""
    formats = []
    for name in inputs_of(task):
        src = tasks.get(name, {})
        if src.get("operation") in ("import/base64", "import/raw") and src.get("filename"):
            formats.append(format_of(str(src["filename"])))
        elif src.get("operation") == "convert" and src.get("output_format"):
            formats.append(norm(str(src["output_format"])))
    return formats


def check_conversion(task: dict[str, Any], static_formats: list[str], engines: Engines) -> None:
    """Without a known input format the pair is checked when the task runs."""
    if task.get("operation") != "convert":
        return
    output = str(task.get("output_format"))
    given = task.get("input_format")
    candidates = [norm(given)] if isinstance(given, str) and given else static_formats
    if any(not engines.supports(fmt, output) for fmt in candidates):
        raise Invalid(code="INVALID_CONVERSION_TYPE", message="This conversion type is not supported")
