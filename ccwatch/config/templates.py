"""Job templates: the ``tasks`` of a CloudConvert job, validated once and rendered per file.

A template is the JSON of CloudConvert's Job Builder (``{"tasks": {...}, "tag": ...}``) or the
same shape inline in the TOML. Every string value may use the input file's
``{stem} {ext} {name} {relpath} {parent}``; ``{{`` and ``}}`` are literal braces. Output file
names (a rule's ``output_name``) have their own placeholders: :func:`format_output_name`.
"""

from __future__ import annotations

import copy
import json
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from ccwatch.errors import ConfigError

UPLOAD_OPERATION = "import/upload"
EXPORT_URL_OPERATION = "export/url"

_TASK_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_TEMPLATE_FILE_KEYS = frozenset({"tasks", "tag"})
# The placeholders each kind of string may use, with sample values for a trial format at load
# time: a bad placeholder or format spec fails there, not on the first file.
_SAMPLE_TASK_VALUES: Mapping[str, object] = {
    "stem": "report", "ext": "docx", "name": "report.docx", "relpath": "a/report.docx",
    "parent": "a",
}
_SAMPLE_OUTPUT_VALUES: Mapping[str, object] = {
    "stem": "report", "ext": "pdf", "inext": "docx", "name": "report.pdf", "parent": "a",
    "date": "2024-01-31", "n": 1,
}


@dataclass(frozen=True, slots=True)
class Template:
    """A validated job template; ``tasks`` is the API's ``tasks`` object with placeholders in it."""

    name: str
    tasks: Mapping[str, Mapping[str, Any]]
    tag: str | None = None
    file: Path | None = None

    @property
    def upload_task(self) -> str:
        """The name of the one ``import/upload`` task (the file is uploaded to its form)."""
        return next(name for name, task in self.tasks.items()
                    if task.get("operation") == UPLOAD_OPERATION)

    @property
    def export_url_tasks(self) -> tuple[str, ...]:
        """Names of the ``export/url`` tasks: their files are what gets downloaded."""
        return tuple(name for name, task in self.tasks.items()
                     if task.get("operation") == EXPORT_URL_OPERATION)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """A plain, deep copy of ``tasks`` (for serialising)."""
        return {name: copy.deepcopy(dict(task)) for name, task in self.tasks.items()}


def parse_template(name: str, data: Mapping[str, Any], *, key: str,
                   file: Path | None = None) -> Template:
    """Validate ``{"tasks": {...}, "tag"?: str}`` into a Template; errors name ``key``."""
    where = f" (in {file})" if file is not None else ""
    tasks = data.get("tasks")
    if not isinstance(tasks, Mapping) or not tasks:
        raise ConfigError(f"{key}.tasks", f"must be a non-empty table of tasks{where}")
    tag = data.get("tag")
    if tag is not None and not isinstance(tag, str):
        raise ConfigError(f"{key}.tag", f"must be a string{where}")
    frozen: dict[str, Mapping[str, Any]] = {}
    for task_name, task in tasks.items():
        task_key = f"{key}.tasks.{task_name}"
        _check_task(task_name, task, tasks, key=task_key, where=where)
        frozen[task_name] = MappingProxyType(copy.deepcopy(dict(task)))
    uploads = [n for n, t in tasks.items() if t["operation"] == UPLOAD_OPERATION]
    if len(uploads) != 1:
        found = ", ".join(uploads) if uploads else "none"
        raise ConfigError(f"{key}.tasks", f"needs exactly one '{UPLOAD_OPERATION}' task, "
                          f"found {len(uploads)} ({found}){where}")
    cycle = _find_cycle(tasks)
    if cycle:
        raise ConfigError(f"{key}.tasks", f"input references form a cycle: "
                          f"{' -> '.join(cycle)}{where}")
    return Template(name=name, tasks=MappingProxyType(frozen), tag=tag, file=file)


def load_template_file(name: str, path: Path, *, key: str) -> Template:
    """Read a Job Builder export (JSON) and validate it; errors name ``key.file`` or the task."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{key}.file", f"cannot read {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key}.file", f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{key}.file", f"{path} must hold a JSON object with \"tasks\"")
    unknown = sorted(set(data) - _TEMPLATE_FILE_KEYS)
    if unknown:
        raise ConfigError(f"{key}.file", f"{path}: unknown key(s) {', '.join(unknown)} "
                          f"(expected \"tasks\" and optionally \"tag\")")
    return parse_template(name, data, key=key, file=path)


def render(template: Template, relpath: PurePosixPath) -> dict[str, Any]:
    """The ``tasks`` for ``POST /v2/jobs``, with the input file's placeholders filled in."""
    values = input_placeholders(relpath)
    return {name: _substitute(dict(task), values) for name, task in template.tasks.items()}


def input_placeholders(relpath: PurePosixPath) -> dict[str, str]:
    """``{stem} {ext} {name} {relpath} {parent}`` of an input path relative to its folder."""
    parent = str(relpath.parent)
    return {
        "stem": relpath.stem,
        "ext": relpath.suffix.removeprefix("."),
        "name": relpath.name,
        "relpath": str(relpath),
        "parent": "" if parent == "." else parent,
    }


def check_output_name(pattern: str, *, key: str) -> None:
    """Validate a rule's ``output_name`` at load time."""
    if not pattern.strip():
        raise ConfigError(key, "must not be empty")
    sample = _check_placeholders(pattern, _SAMPLE_OUTPUT_VALUES, key=key, where="")
    if sample.startswith("/") or ".." in PurePosixPath(sample).parts or "\\" in sample:
        raise ConfigError(key, f"must name a file inside the output folder, got \"{pattern}\"")


def format_output_name(pattern: str, *, input_relpath: PurePosixPath, output_filename: str,
                       n: int, date: str) -> str:
    """An output's file name from a rule's ``output_name``.

    ``stem`` and ``inext`` are the input's stem and extension; ``ext`` and ``name`` are the
    *output* file's (as the server named it), ``parent`` the input's folder relative to the
    watched input ("" at top level), ``n`` the output's 1-based index in the job, ``date``
    whatever date text the caller passes.
    """
    output = PurePosixPath(output_filename)
    parent = str(input_relpath.parent)
    name = pattern.format(
        stem=input_relpath.stem,
        ext=output.suffix.removeprefix("."),
        inext=input_relpath.suffix.removeprefix("."),
        name=output.name,
        parent="" if parent == "." else parent,
        date=date,
        n=n,
    )
    # "{stem}.{ext}" for an output without an extension would end in a bare dot.
    if not output.suffix and name.endswith("."):
        name = name.rstrip(".")
    return name


def _check_task(task_name: str, task: Any, tasks: Mapping[str, Any], *, key: str,
                where: str) -> None:
    if not _TASK_NAME.match(task_name):
        raise ConfigError(key, f"task names may only use letters, digits, '_' and '-'{where}")
    if not isinstance(task, Mapping):
        raise ConfigError(key, f"must be a table with an 'operation'{where}")
    operation = task.get("operation")
    if not isinstance(operation, str) or not operation:
        raise ConfigError(f"{key}.operation", f"must be a string such as \"convert\"{where}")
    inputs = task.get("input")
    if inputs is None:
        if not operation.startswith("import/"):
            raise ConfigError(f"{key}.input", f"is required for a '{operation}' task{where}")
    else:
        for ref in _input_refs(inputs, key=f"{key}.input", where=where):
            if ref not in tasks:
                raise ConfigError(f"{key}.input", f"no task named '{ref}'{where}")
    for value in _strings(task):
        _check_placeholders(value, _SAMPLE_TASK_VALUES, key=key, where=where)


def _input_refs(inputs: Any, *, key: str, where: str) -> list[str]:
    if isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, list) and inputs and all(isinstance(i, str) for i in inputs):
        return list(inputs)
    raise ConfigError(key, f"must be a task name or a list of task names{where}")


def _find_cycle(tasks: Mapping[str, Any]) -> list[str]:
    """A cycle in the ``input`` graph as a list of names (first == last), or [] if there is none."""
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> list[str]:
        if name in trail:
            return [*trail[trail.index(name):], name]
        if name in done:
            return []
        inputs = tasks[name].get("input")
        refs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        for ref in refs:
            cycle = visit(ref, [*trail, name])
            if cycle:
                return cycle
        done.add(name)
        return []

    for name in tasks:
        cycle = visit(name, [])
        if cycle:
            return cycle
    return []


def _check_placeholders(text: str, sample: Mapping[str, object], *, key: str,
                        where: str) -> str:
    """Check ``text``'s placeholders against ``sample``'s names; returns the sample rendering."""
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]
    except ValueError as exc:  # a lone "{" or "}"
        raise ConfigError(key, f"bad braces in \"{text}\": {exc} (write {{{{ or }}}} "
                          f"for a literal brace){where}") from exc
    for field in fields:
        if field not in sample:
            known = " ".join(f"{{{name}}}" for name in sorted(sample))
            raise ConfigError(key, f"unknown placeholder {{{field}}} in \"{text}\" "
                              f"(known: {known}){where}")
    try:
        return text.format(**sample)
    except (ValueError, IndexError, TypeError) as exc:  # e.g. a format spec that does not fit
        raise ConfigError(key, f"cannot format \"{text}\": {exc}{where}") from exc


def _strings(value: Any) -> Iterator[str]:
    """Every string value nested in ``value`` (keys are names, not templates)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _substitute(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**values)
    if isinstance(value, Mapping):
        return {k: _substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(item, values) for item in value]
    return value


def predicted_filenames(template: Template, relpath: PurePosixPath) -> list[str]:
    """The file name each ``export/url`` task would download, as CloudConvert names it: a task's
    ``filename`` when the template sets one, else the input's stem with the ``output_format`` of
    the task that made the file (a prediction: the server has the last word)."""
    values = input_placeholders(relpath)
    tasks = template.tasks
    return [_made_by(tasks, task, values, relpath, depth=0)
            for task in tasks.values() if task.get("operation") == EXPORT_URL_OPERATION]


def _made_by(tasks: Mapping[str, Mapping[str, Any]], task: Mapping[str, Any],
             values: Mapping[str, str], relpath: PurePosixPath, *, depth: int) -> str:
    source = task.get("input")
    if isinstance(source, list):
        source = source[0] if source else None
    parent = tasks.get(source) if isinstance(source, str) else None
    if parent is None or depth > len(tasks):
        return relpath.name
    filename = parent.get("filename")
    if isinstance(filename, str) and filename:
        return filename.format(**values)
    fmt = parent.get("output_format")
    if isinstance(fmt, str) and fmt:
        return f"{relpath.stem}.{fmt}"
    if parent.get("operation") == UPLOAD_OPERATION:
        return relpath.name
    return _made_by(tasks, parent, values, relpath, depth=depth + 1)
