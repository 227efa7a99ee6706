"""Job templates: validation at load, per-file rendering, output file names."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from ccwatch.config.templates import (
    check_output_name,
    format_output_name,
    load_template_file,
    parse_template,
    predicted_filenames,
    render,
)
from ccwatch.errors import ConfigError


def job(**tasks: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "in": {"operation": "import/upload"},
        "convert": {"operation": "convert", "input": "in", "output_format": "pdf"},
        "out": {"operation": "export/url", "input": ["convert"]},
    }
    base.update(tasks)
    return {"tasks": {name: task for name, task in base.items() if task}}


def parse_error(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_template("t", data, key="templates.t")
    return info.value


def test_valid_template_exposes_upload_and_export_tasks() -> None:
    """The upload task and export/url tasks are found by operation, not by name."""
    template = parse_template("t", {**job(thumb={"operation": "export/url", "input": "in"}),
                                    "tag": "builder"}, key="templates.t")
    assert template.upload_task == "in"
    assert template.export_url_tasks == ("out", "thumb")
    assert template.tag == "builder"


def test_template_without_export_url_is_valid() -> None:
    """A template that exports elsewhere (S3) is allowed and has no downloads."""
    template = parse_template("t", job(out={"operation": "export/s3", "input": "convert",
                                            "bucket": "b"}), key="templates.t")
    assert template.export_url_tasks == ()


def test_parsed_template_is_isolated_from_its_source() -> None:
    """Later changes to the parsed dict cannot alter the template."""
    data = job()
    template = parse_template("t", data, key="templates.t")
    data["tasks"]["convert"]["output_format"] = "png"
    assert template.tasks["convert"]["output_format"] == "pdf"
    with pytest.raises(TypeError):
        template.tasks["convert"]["output_format"] = "png"  # type: ignore[index]


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        (job(**{"in": {"operation": "import/url", "url": "https://example.org/a.docx"}}),
         "templates.t.tasks", "found 0 (none)"),
        (job(in2={"operation": "import/upload"}), "templates.t.tasks", "found 2 (in, in2)"),
        (job(convert={"operation": "convert", "input": "out"}), "templates.t.tasks",
         "cycle: convert -> out -> convert"),
        (job(convert={"operation": "convert", "input": "convert"}), "templates.t.tasks",
         "cycle: convert -> convert"),
        (job(out={"operation": "export/url", "input": ["convert", "nope"]}),
         "templates.t.tasks.out.input", "no task named 'nope'"),
        (job(out={"operation": "export/url", "input": 3}), "templates.t.tasks.out.input",
         "task name or a list"),
        (job(out={"operation": "export/url"}), "templates.t.tasks.out.input", "is required"),
        (job(**{"bad name": {"operation": "import/url", "url": "x"}}),
         "templates.t.tasks.bad name", "letters, digits"),
        (job(convert={"input": "in"}), "templates.t.tasks.convert.operation", "must be a string"),
        (job(convert="convert"), "templates.t.tasks.convert", "must be a table"),
        ({"tasks": {}}, "templates.t.tasks", "non-empty"),
        ({**job(), "tag": 5}, "templates.t.tag", "must be a string"),
        (job(convert={"operation": "convert", "input": "in", "filename": "{stem}-{size}.pdf"}),
         "templates.t.tasks.convert", "unknown placeholder {size}"),
        (job(convert={"operation": "convert", "input": "in", "filename": "a}b"}),
         "templates.t.tasks.convert", "bad braces"),
        (job(convert={"operation": "convert", "input": "in", "filename": "{stem:d}"}),
         "templates.t.tasks.convert", "cannot format"),
    ],
    ids=["no-upload", "two-uploads", "cycle", "self-cycle", "bad-ref", "bad-ref-type",
         "missing-input", "bad-name", "no-operation", "task-not-table", "no-tasks", "bad-tag",
         "unknown-placeholder", "lone-brace", "bad-format-spec"],
)
def test_invalid_templates_name_their_key(data: dict[str, Any], key: str, fragment: str) -> None:
    """Each kind of bad template is refused with the dotted key of the culprit."""
    error = parse_error(data)
    assert error.key == key
    assert fragment in error.problem


def test_render_substitutes_nested_strings_only() -> None:
    """Placeholders are filled in every nested string value; keys and non-strings are kept."""
    template = parse_template("t", job(convert={
        "operation": "convert", "input": "in", "output_format": "pdf",
        "filename": "{stem}-converted.pdf",
        "options": {"title": "{name} in {parent}", "pages": [1, "{relpath}"], "dpi": 300},
        "note": "{{literal}} {ext}",
    }), key="templates.t")
    rendered = render(template, PurePosixPath("2024/jan/report.final.docx"))
    convert = rendered["convert"]
    assert convert["filename"] == "report.final-converted.pdf"
    assert convert["options"] == {"title": "report.final.docx in 2024/jan",
                                  "pages": [1, "2024/jan/report.final.docx"], "dpi": 300}
    assert convert["note"] == "{literal} docx"
    assert rendered["out"] == {"operation": "export/url", "input": ["convert"]}


def test_render_at_top_level_has_empty_parent_and_returns_fresh_dicts() -> None:
    """A top-level file has parent ""; changing a render never changes the template."""
    template = parse_template("t", job(convert={"operation": "convert", "input": "in",
                                                "filename": "[{parent}]{stem}"}),
                              key="templates.t")
    first = render(template, PurePosixPath("scan"))
    assert first["convert"]["filename"] == "[]scan"
    first["convert"]["filename"] = "changed"
    assert render(template, PurePosixPath("scan"))["convert"]["filename"] == "[]scan"


def test_load_template_file_reads_job_builder_export(tmp_path: Path) -> None:
    """A Job Builder JSON export loads with its tag and remembers its file."""
    path = tmp_path / "to-pdf.json"
    path.write_text(json.dumps({**job(), "tag": "jobbuilder"}), encoding="utf-8")
    template = load_template_file("to-pdf", path, key="templates.to-pdf")
    assert (template.name, template.tag, template.file) == ("to-pdf", "jobbuilder", path)
    assert template.upload_task == "in"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "cannot read"), ("{not json", "not valid JSON"), ("[1]", "JSON object"),
     (json.dumps({**job(), "webhook_url": "x"}), "unknown key(s) webhook_url")],
    ids=["missing", "bad-json", "not-object", "unknown-key"],
)
def test_bad_template_files_name_the_file_key(tmp_path: Path, content: str | None,
                                              fragment: str) -> None:
    """File problems are reported on the template's ``file`` key."""
    path = tmp_path / "t.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_template_file("t", path, key="templates.t")
    assert info.value.key == "templates.t.file"
    assert fragment in info.value.problem


def test_errors_inside_a_template_file_mention_the_file(tmp_path: Path) -> None:
    """A bad task in a JSON file names the task's key and the file it is in."""
    path = tmp_path / "t.json"
    path.write_text(json.dumps(job(out={"operation": "export/url", "input": "x"})),
                    encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_template_file("t", path, key="templates.t")
    assert info.value.key == "templates.t.tasks.out.input"
    assert str(path) in info.value.problem


@pytest.mark.parametrize(
    ("pattern", "output", "expected"),
    [
        ("{stem}.{ext}", "page.png", "scan.png"),
        ("{name}", "page-1.png", "page-1.png"),
        ("{stem}-{n:03d}.{ext}", "x.pdf", "scan-002.pdf"),
        ("{date} {stem}.{ext}", "x.pdf", "2024-05-01 scan.pdf"),
        ("{parent}_{stem}.{ext}", "x.pdf", "in/box_scan.pdf"),
        ("{stem}.{ext}", "README", "scan"),
        ("{{{stem}}}.{ext}", "x.pdf", "{scan}.pdf"),
        ("{stem}-{inext}.{ext}", "scan.pdf", "scan-tiff.pdf"),
    ],
)
def test_format_output_name(pattern: str, output: str, expected: str) -> None:
    """stem comes from the input, ext and name from the output, n and date from the caller."""
    name = format_output_name(pattern, input_relpath=PurePosixPath("in/box/scan.tiff"),
                              output_filename=output, n=2, date="2024-05-01")
    assert name == expected


def test_format_output_name_top_level_parent_is_empty() -> None:
    """At the top of the watched folder, {parent} is empty."""
    name = format_output_name("[{parent}]{name}", input_relpath=PurePosixPath("a.docx"),
                              output_filename="a.pdf", n=1, date="d")
    assert name == "[]a.pdf"


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [("", "must not be empty"), ("{stem}.{relpath}", "unknown placeholder {relpath}"),
     ("../{name}", "inside the output folder"), ("/tmp/{name}", "inside the output folder"),
     ("{n:q}", "cannot format"), ("{stem", "bad braces")],
)
def test_check_output_name_refuses_bad_patterns(pattern: str, fragment: str) -> None:
    """Bad output_name patterns fail at load, naming the rule's key."""
    with pytest.raises(ConfigError) as info:
        check_output_name(pattern, key="folders[0].rules[0].output_name")
    assert info.value.key == "folders[0].rules[0].output_name"
    assert fragment in info.value.problem


def test_check_output_name_accepts_every_placeholder() -> None:
    """All documented placeholders pass validation."""
    check_output_name("{parent}-{stem}-{n}-{date}-{name}-{inext}.{ext}", key="k")


def test_predicted_filenames_follow_the_servers_naming() -> None:
    """A task's filename wins; else the stem with the output_format of the task that made it;
    a chain of tasks is followed back; an export of the upload itself keeps the input's name."""
    template = parse_template("t", job(
        thumb={"operation": "thumbnail", "input": "convert", "output_format": "png",
               "filename": "{stem}-small.png"},
        zip={"operation": "archive", "input": ["convert"], "output_format": "zip"},
        again={"operation": "optimize", "input": "zip"},
        raw={"operation": "export/url", "input": "in"},
        t_out={"operation": "export/url", "input": "thumb"},
        z_out={"operation": "export/url", "input": "again"},
    ), key="templates.t")
    names = predicted_filenames(template, PurePosixPath("a/scan.tiff"))
    assert names == ["scan.pdf", "scan.tiff", "scan-small.png", "scan.zip"]
