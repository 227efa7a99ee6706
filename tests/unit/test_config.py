"""Configuration: TOML → frozen dataclasses, errors that name their key, round trips, secrets."""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import platformdirs
import pytest
import tomli_w

from ccwatch import config
from ccwatch.config.parse import looks_like_secret, parse_size
from ccwatch.errors import ConfigError, ExitCode

REPO = Path(__file__).resolve().parents[2]
TO_PDF_TASKS = {
    "in": {"operation": "import/upload"},
    "convert": {"operation": "convert", "input": "in", "output_format": "pdf"},
    "out": {"operation": "export/url", "input": "convert"},
}


def minimal() -> dict[str, Any]:
    """The smallest valid config, with relative folders (created on load)."""
    return {
        "templates": {"to-pdf": {"tasks": copy.deepcopy(TO_PDF_TASKS)}},
        "folders": [{"input": "in", "output": "out", "quarantine": "failed",
                     "rules": [{"match": ["*.docx"], "template": "to-pdf"}]}],
    }


def write(directory: Path, data: dict[str, Any] | str, name: str = "ccwatch.toml") -> Path:
    path = directory / name
    path.write_text(data if isinstance(data, str) else tomli_w.dumps(data), encoding="utf-8")
    return path


def load_error(tmp_path: Path, data: dict[str, Any] | str, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, data), env={}, **kwargs)
    return info.value


def round_trip(cfg: config.Config, directory: Path) -> config.Config:
    directory.mkdir(exist_ok=True)
    return config.load(write(directory, config.dump(cfg)), env={})


def test_example_config_loads_creates_its_folders_and_round_trips(tmp_path: Path) -> None:
    """The shipped example runs as-is: embedded engine, relative folders created beside it."""
    shutil.copy(REPO / "config.example.toml", tmp_path / "config.example.toml")
    cfg = config.load(tmp_path / "config.example.toml", env={})
    assert cfg.cloudconvert.endpoint == "embedded"
    assert cfg.cloudconvert.api_key is None
    assert cfg.daemon.resolved_state_dir() == tmp_path / ".ccwatch-state"
    (folder,) = cfg.folders
    for path in (folder.input, folder.output, folder.quarantine):
        assert path.parent == tmp_path and path.is_dir()
    assert {r.template for r in folder.rules} <= set(cfg.templates)
    assert round_trip(cfg, tmp_path / "elsewhere") == cfg


def test_example_office_template_file_is_valid() -> None:
    """The Job Builder file the example mentions (commented out) is a valid template."""
    from ccwatch.config.templates import load_template_file

    template = load_template_file("office-to-pdf", REPO / "templates" / "office-to-pdf.json",
                                  key="templates.office-to-pdf")
    assert template.upload_task == "import-file"
    assert template.export_url_tasks == ("export-pdf",)


def rich(tmp_path: Path) -> dict[str, Any]:
    """Every section and key, absolute folders, a template file and two folders."""
    for name in ("a-in", "a-out", "a-failed", "a-archive", "b-in", "b-out", "b-failed"):
        (tmp_path / name).mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "ocr.json").write_text(
        json.dumps({"tasks": TO_PDF_TASKS, "tag": "jobbuilder"}), encoding="utf-8")
    return {
        "cloudconvert": {"endpoint": "live", "region": "eu-central", "sync_endpoint": "",
                         "api_key_env": "MY_KEY", "api_key_file": "key.txt", "timeout_s": 12.5},
        "daemon": {"state_dir": str(tmp_path / "state"), "max_in_flight": 3,
                   "upload_workers": 2, "download_workers": 1, "poll_interval_s": 0.5,
                   "poll_max_s": 10, "give_up_after_s": 3600, "job_timeout_s": 7200,
                   "shutdown_grace_s": 0,
                   "log_format": "json", "log_level": "debug", "tracking": "poll"},
        "http": {"listen": "127.0.0.1:9100"},
        "webhook": {"listen": "[::1]:9000", "public_url": "https://h.example/cc/hook",
                    "secret_env": "HOOK_SECRET"},
        "templates": {
            "ocr": {"file": "templates/ocr.json"},
            "thumb": {"tag": "thumbs", "tasks": {
                "up": {"operation": "import/upload"},
                "t": {"operation": "thumbnail", "input": ["up"], "width": 200,
                      "filename": "{stem}-thumb.png", "meta": {"source": "{relpath}"}},
                "out": {"operation": "export/url", "input": "t"}}},
        },
        "folders": [
            {"name": "scans", "input": str(tmp_path / "a-in"), "output": str(tmp_path / "a-out"),
             "quarantine": str(tmp_path / "a-failed"), "recursive": False, "watch": "poll",
             "poll_s": 1.5, "rescan_s": 60, "settle_s": 0, "originals": "move",
             "archive": str(tmp_path / "a-archive"), "ignore": ["*.bak", "draft-*"],
             "max_file_size": "1.5 GiB", "on_failed": ["alert", "--loud"],
             "rules": [{"match": ["*.TIF", "sub/*.png"], "template": "ocr",
                        "output_name": "{date}-{stem}-{n}.{ext}", "on_conflict": "overwrite",
                        "on_done": ["notify-send", "done"]},
                       {"match": ["*.jpg"], "template": "thumb", "on_conflict": "skip"}]},
            {"input": str(tmp_path / "b-in"), "output": str(tmp_path / "b-out"),
             "quarantine": str(tmp_path / "b-failed"), "originals": "delete",
             "max_file_size": 5000, "rules": [{"match": ["*"], "template": "thumb"}]},
        ],
    }


def test_rich_config_values_and_round_trip(tmp_path: Path) -> None:
    """Every key is read into its typed field, and dump/load reproduces the config."""
    (tmp_path / "key.txt").write_text("  file-key\n", encoding="utf-8")
    cfg = config.load(write(tmp_path, rich(tmp_path)), env={"HOOK_SECRET": "s3"})
    assert cfg.cloudconvert.base_url() == "https://eu-central.api.cloudconvert.com"
    assert cfg.cloudconvert.api_key == config.Secret("file-key")
    assert cfg.cloudconvert.api_key_file == tmp_path / "key.txt"
    assert cfg.daemon.shutdown_grace_s == 0.0 and cfg.daemon.log_format == "json"
    assert cfg.daemon.job_timeout_s == 7200.0
    assert cfg.daemon.log_level == "debug"
    assert cfg.http.host_port() == ("127.0.0.1", 9100)
    assert cfg.daemon.tracking == "poll"
    assert cfg.webhook is not None and cfg.webhook.host_port() == ("::1", 9000)
    assert cfg.webhook.path() == "/cc/hook" and cfg.webhook.secret == config.Secret("s3")
    assert cfg.templates["ocr"].tag == "jobbuilder"
    assert cfg.templates["ocr"].file == tmp_path / "templates" / "ocr.json"
    scans, second = cfg.folders
    assert scans.max_file_size == 1_610_612_736 and scans.archive == tmp_path / "a-archive"
    assert scans.rules[0].match == ("*.TIF", "sub/*.png") and scans.settle_s == 0.0
    assert scans.rules[0].on_done == ("notify-send", "done") and scans.on_failed == ("alert", "--loud")
    assert second.name == "b-in" and second.recursive is True and second.max_file_size == 5000
    assert cfg.source == tmp_path / "ccwatch.toml"
    assert round_trip(cfg, tmp_path / "copy") == cfg


def test_defaults_of_an_absent_section(tmp_path: Path) -> None:
    """Missing sections take the documented defaults; no webhook means polling."""
    cfg = config.load(write(tmp_path, minimal()), env={})
    assert cfg.cloudconvert == config.CloudConvertConfig()
    assert cfg.daemon == config.DaemonConfig()
    assert cfg.webhook is None
    assert cfg.http.listen == "" and cfg.http.host_port() is None  # no status page by default
    assert cfg.folders[0] == config.FolderConfig(
        name="in", input=tmp_path / "in", output=tmp_path / "out",
        quarantine=tmp_path / "failed",
        rules=(config.Rule(match=("*.docx",), template="to-pdf"),))


def test_relative_paths_resolve_against_the_config_folder_not_cwd(tmp_path: Path) -> None:
    """A config loaded from elsewhere still finds its folders next to itself."""
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    cfg = config.load(write(conf_dir, minimal()), env={}, check_folders=False)
    assert cfg.folders[0].input == conf_dir / "in"
    assert not (conf_dir / "in").exists()  # check_folders=False touches nothing
    config.check_folders(cfg)
    assert (conf_dir / "in").is_dir()


def test_loads_uses_base_dir(tmp_path: Path) -> None:
    """loads() resolves relative paths against base_dir."""
    cfg = config.loads(tomli_w.dumps(minimal()), base_dir=tmp_path, env={}, check_folders=False)
    assert cfg.folders[0].output == tmp_path / "out"
    assert cfg.source is None


Mutation = Callable[[dict[str, Any]], None]


def setitem(path: str, value: Any) -> Mutation:
    """A mutation setting a dotted path such as "folders.0.rules.0.template"."""
    def apply(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return apply


BAD_INPUTS: list[tuple[str, Mutation, str, str]] = [
    ("unknown-key", setitem("cloudconvert.endpoin", "live"), "cloudconvert.endpoin",
     "unknown key (did you mean 'endpoint'?)"),
    ("unknown-top-key", setitem("folder", []), "folder", "unknown key (did you mean 'folders'?)"),
    ("unknown-rule-key", setitem("folders.0.rules.0.templates", "x"),
     "folders[0].rules[0].templates", "unknown key"),
    ("wrong-type", setitem("daemon.max_in_flight", "x"), "daemon.max_in_flight",
     'must be an integer >= 1, got "x"'),
    ("bool-is-not-int", setitem("daemon.upload_workers", True), "daemon.upload_workers",
     "got true"),
    ("zero-workers", setitem("daemon.download_workers", 0), "daemon.download_workers", ">= 1"),
    ("zero-duration", setitem("daemon.poll_interval_s", 0), "daemon.poll_interval_s", "> 0"),
    ("nan-duration", setitem("folders.0.settle_s", float("nan")), "folders[0].settle_s", ">= 0"),
    ("poll-max-below-first", setitem("daemon.poll_max_s", 1), "daemon.poll_max_s",
     "must be >= poll_interval_s"),
    ("bad-enum", setitem("folders.0.watch", "inotify"), "folders[0].watch",
     'must be one of "auto" | "events" | "poll", got "inotify"'),
    ("bad-log-format", setitem("daemon.log_format", "xml"), "daemon.log_format", "one of"),
    ("bad-tracking", setitem("daemon.tracking", "push"), "daemon.tracking", "one of"),
    ("bad-size-unit", setitem("folders.0.max_file_size", "10 XB"), "folders[0].max_file_size",
     "unknown size unit"),
    ("bad-size-type", setitem("folders.0.max_file_size", 1.5), "folders[0].max_file_size",
     "a size in bytes"),
    ("zero-size", setitem("folders.0.max_file_size", 0), "folders[0].max_file_size",
     "at least 1 byte"),
    ("missing-template", setitem("folders.0.rules.0.template", "pdf2"),
     "folders[0].rules[0].template", "no template 'pdf2' (known: 'to-pdf')"),
    ("bad-output-name", setitem("folders.0.rules.0.output_name", "{stem}.{format}"),
     "folders[0].rules[0].output_name", "unknown placeholder {format}"),
    ("bad-on-conflict", setitem("folders.0.rules.0.on_conflict", "replace"),
     "folders[0].rules[0].on_conflict", "one of"),
    ("empty-match", setitem("folders.0.rules.0.match", []), "folders[0].rules[0].match",
     "at least one glob"),
    ("match-not-list", setitem("folders.0.rules.0.match", "*.pdf"), "folders[0].rules[0].match",
     "list of non-empty strings"),
    ("no-rules", setitem("folders.0.rules", []), "folders[0].rules", "at least one"),
    ("no-folders", setitem("folders", []), "folders", "at least one"),
    ("missing-input", lambda d: d["folders"][0].pop("input"), "folders[0].input", "is required"),
    ("move-needs-archive", setitem("folders.0.originals", "move"), "folders[0].archive",
     'required when originals = "move"'),
    ("duplicate-names", lambda d: d["folders"].append(
        {**copy.deepcopy(d["folders"][0]), "input": "x/in", "output": "x/out"}),
     "folders[1].name", '"in" is already the name of folders[0]'),
    ("bad-endpoint", setitem("cloudconvert.endpoint", "prod"), "cloudconvert.endpoint",
     "live, sandbox, embedded or an http(s):// URL"),
    ("endpoint-with-v2", setitem("cloudconvert.endpoint", "http://127.0.0.1:8400/v2"),
     "cloudconvert.endpoint", "without /v2"),
    ("bad-region", setitem("cloudconvert.region", "eu-west"), "cloudconvert.region", "one of"),
    ("region-on-sandbox", lambda d: d.update(cloudconvert={"endpoint": "sandbox",
                                                           "region": "us-east"}),
     "cloudconvert.region", 'only applies to endpoint = "live"'),
    ("bad-listen", setitem("webhook", {"listen": "localhost", "public_url": "https://x/h"}),
     "webhook.listen", "host:port"),
    ("webhook-needs-url", setitem("webhook", {}), "webhook.public_url", "is required"),
    ("bad-http-listen", setitem("http", {"listen": "9100"}), "http.listen", "host:port"),
    ("unknown-http-key", setitem("http", {"port": 9100}), "http.port", "unknown key"),
    ("bad-log-level", setitem("daemon.log_level", "trace"), "daemon.log_level", "one of"),
    ("hook-as-string", setitem("folders.0.rules.0.on_done", "notify-send done"),
     "folders[0].rules[0].on_done", "list of non-empty strings"),
    ("bad-hook-timeout", setitem("daemon.hook_timeout_s", 0), "daemon.hook_timeout_s", "> 0"),
    ("bad-template", setitem("templates.to-pdf.tasks.out.input", "nowhere"),
     "templates.to-pdf.tasks.out.input", "no task named 'nowhere'"),
    ("template-file-and-tasks", setitem("templates.to-pdf.file", "x.json"), "templates.to-pdf",
     "either file or tasks"),
    ("template-missing-file", setitem("templates.to-pdf", {"file": "nope.json"}),
     "templates.to-pdf.file", "cannot read"),
    ("output-inside-input", setitem("folders.0.output", "in/converted"), "folders[0].output",
     "inside the watched input of folders[0]"),
    ("quarantine-is-input", setitem("folders.0.quarantine", "./in/"), "folders[0].quarantine",
     "inside the watched input"),
    ("state-inside-input", setitem("daemon.state_dir", "in/.state"), "daemon.state_dir",
     "inside the watched input"),
]


@pytest.mark.parametrize(("mutate", "key", "fragment"), [b[1:] for b in BAD_INPUTS],
                         ids=[b[0] for b in BAD_INPUTS])
def test_bad_config_names_its_key(tmp_path: Path, mutate: Mutation, key: str,
                                  fragment: str) -> None:
    """Each class of bad input is a ConfigError (exit 2) whose key points at the culprit."""
    data = minimal()
    mutate(data)
    error = load_error(tmp_path, data)
    assert (error.key, fragment in error.problem) == (key, True), error.problem
    assert str(error) == f"{key}: {error.problem}"
    assert error.exit_code == ExitCode.CONFIG


def test_output_inside_another_folders_input_is_refused(tmp_path: Path) -> None:
    """A folder may not deliver into any other folder's watched input."""
    data = minimal()
    data["folders"].append({"input": "second", "output": "in/from-second", "quarantine": "q2",
                            "rules": [{"match": ["*"], "template": "to-pdf"}]})
    error = load_error(tmp_path, data)
    assert error.key == "folders[1].output"
    assert "folders[0]" in error.problem


def test_output_inside_its_own_input_suggests_in_place(tmp_path: Path) -> None:
    """Without in_place the refusal names the setting that allows it."""
    data = minimal()
    data["folders"][0]["output"] = "in"
    error = load_error(tmp_path, data)
    assert error.key == "folders[0].output" and "set in_place = true" in error.problem


@pytest.mark.parametrize("output", ["in", "in/converted", "./in/"])
def test_in_place_allows_output_in_its_own_input(tmp_path: Path, output: str) -> None:
    """in_place = true: output may be the input or below it; the setting survives a round trip."""
    data = minimal()
    data["folders"][0] |= {"output": output, "in_place": True}
    cfg = config.load(write(tmp_path, data), env={})
    folder = cfg.folders[0]
    assert folder.in_place and folder.output == tmp_path / output.strip("./").rstrip("/")
    assert round_trip(cfg, tmp_path / "again").folders[0].in_place


def test_in_place_never_allows_output_in_another_folders_input(tmp_path: Path) -> None:
    """in_place covers a folder's own input only: other folders' inputs stay off limits."""
    data = minimal()
    data["folders"][0]["in_place"] = True
    data["folders"].append({"input": "second", "output": "in", "quarantine": "q2", "in_place": True,
                            "rules": [{"match": ["*"], "template": "to-pdf"}]})
    error = load_error(tmp_path, data)
    assert error.key == "folders[1].output" and "folders[0]" in error.problem


def test_in_place_does_not_admit_quarantine_in_the_input(tmp_path: Path) -> None:
    """Only the output may be inside: a quarantine there is still refused."""
    data = minimal()
    data["folders"][0] |= {"output": "in", "quarantine": "in/failed", "in_place": True}
    assert load_error(tmp_path, data).key == "folders[0].quarantine"


def test_check_explains_in_place(tmp_path: Path) -> None:
    """``ccwatch check`` says what in_place does for the folder (and when it does nothing)."""
    from ccwatch.commands.check import OK, WARN, run_checks

    data = minimal()
    data["cloudconvert"] = {"endpoint": "embedded"}
    data["daemon"] = {"state_dir": "state"}
    data["folders"][0] |= {"output": "in", "in_place": True}
    data["folders"].append({"input": "two", "output": "two-out", "quarantine": "q2",
                            "in_place": True, "rules": [{"match": ["*"], "template": "to-pdf"}]})
    cfg = config.load(write(tmp_path, data), env={})
    found = {f.subject: f for f in run_checks(cfg).findings}
    beside = found["folders[0].in_place"]
    assert beside.level == OK and "beside their inputs" in beside.message
    assert "never converted again" in beside.message
    useless = found["folders[1].in_place"]
    assert useless.level == WARN and "no effect" in useless.message


def test_output_reaching_an_input_through_a_symlink_is_refused(tmp_path: Path) -> None:
    """Paths are also compared after resolving symlinks."""
    (tmp_path / "in").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "in")
    data = minimal()
    data["folders"][0]["output"] = "link/out"
    assert load_error(tmp_path, data).key == "folders[0].output"


def test_nested_recursive_inputs_are_refused(tmp_path: Path) -> None:
    """A second folder inside a recursively watched input would convert files twice."""
    data = minimal()
    data["folders"].append({"input": "in/sub", "output": "o2", "quarantine": "q2",
                            "rules": [{"match": ["*"], "template": "to-pdf"}]})
    assert load_error(tmp_path, data).key == "folders[1].input"
    data["folders"][0]["recursive"] = False
    config.load(write(tmp_path, data), env={})  # not watched below the top: allowed


def test_bad_toml_names_the_file_with_line_and_column(tmp_path: Path) -> None:
    """A TOML syntax error is keyed by the file name and says where."""
    error = load_error(tmp_path, "[daemon]\nmax_in_flight = = 3\n")
    assert error.key == "ccwatch.toml"
    assert "line 2" in error.problem and "column" in error.problem


def test_absolute_folders_are_never_created(tmp_path: Path) -> None:
    """A missing absolute folder (an unmounted share?) is an error, and stays missing."""
    data = minimal()
    data["folders"][0]["output"] = str(tmp_path / "share" / "out")
    error = load_error(tmp_path, data)
    assert error.key == "folders[0].output" and "does not exist" in error.problem
    assert not (tmp_path / "share").exists()


def test_relative_folder_that_cannot_be_created(tmp_path: Path) -> None:
    """A relative folder below a regular file cannot be created: the error names its key."""
    (tmp_path / "blocker").write_text("", encoding="utf-8")
    data = minimal()
    data["folders"][0]["quarantine"] = "blocker/failed"
    error = load_error(tmp_path, data)
    assert error.key == "folders[0].quarantine" and "cannot create" in error.problem


def test_folder_that_is_a_file(tmp_path: Path) -> None:
    """A path naming a file, not a folder, is refused."""
    (tmp_path / "in").write_text("", encoding="utf-8")
    error = load_error(tmp_path, minimal())
    assert error.key == "folders[0].input" and "is not a folder" in error.problem


def test_unwritable_folder_is_refused(tmp_path: Path) -> None:
    """A read-only output folder stops the load with the owner message.

    Root may write to any mode, so as root the folder is a read-only tmpfs mount instead.
    """
    import subprocess

    path = write(tmp_path, minimal())
    for name in ("in", "out", "failed"):
        (tmp_path / name).mkdir(exist_ok=True)
    as_root = os.geteuid() == 0
    if as_root:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(tmp_path / "out")],
                       check=True, timeout=30)
    else:
        (tmp_path / "out").chmod(0o500)
    try:
        error = load_error(tmp_path, minimal())
    finally:
        if as_root:
            subprocess.run(["umount", str(tmp_path / "out")], check=True, timeout=30)
        else:
            (tmp_path / "out").chmod(0o700)
    assert path.exists()
    assert error.key == "folders[0].output"
    expected = "is on a read-only filesystem" if as_root else "is not readable and writable by"
    assert expected in error.problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [(2048, 2048), ("10 MB", 10_000_000), ("1.5 GiB", 1_610_612_736), ("500k", 500_000),
     ("1 GB", 10**9), ("3mib", 3 * 2**20), ("7 B", 7), ("12", 12), ("2 TiB", 2 * 2**40)],
)
def test_sizes(text: int | str, expected: int) -> None:
    """Sizes are bytes or decimal (kB, MB) / binary (KiB, MiB) strings, any case."""
    assert parse_size(text, key="k") == expected


@pytest.mark.parametrize("text", ["ten MB", "-1", "1,5 MB", "", True])
def test_bad_sizes(text: object) -> None:
    """Anything else is refused with the key."""
    with pytest.raises(ConfigError, match=r"^k: "):
        parse_size(text, key="k")


def test_api_key_sources_in_order(tmp_path: Path) -> None:
    """Environment first, then api_key_file, then the systemd credential."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "cloudconvert-api-key").write_text("cred-key\n", encoding="utf-8")
    (tmp_path / "key").write_text("file-key", encoding="utf-8")
    data = minimal()
    env = {"CLOUDCONVERT_API_KEY": "env-key", "CREDENTIALS_DIRECTORY": str(creds)}

    def key(data: dict[str, Any], env: dict[str, str]) -> str | None:
        secret = config.load(write(tmp_path, data), env=env).cloudconvert.api_key
        return secret.reveal() if secret else None

    assert key(data, env) == "env-key"
    assert key(data, {**env, "CLOUDCONVERT_API_KEY": ""}) == "cred-key"
    assert key(data, {}) is None
    data["cloudconvert"] = {"api_key_file": "key"}
    assert key(data, {"CREDENTIALS_DIRECTORY": str(creds)}) == "file-key"
    data["cloudconvert"] = {"api_key_file": "missing"}
    error = load_error(tmp_path, data)
    assert error.key == "cloudconvert.api_key_file" and "does not exist" in error.problem


def test_webhook_secret_from_env_or_credential(tmp_path: Path) -> None:
    """The webhook secret comes from secret_env, else the systemd credential."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "cloudconvert-webhook-secret").write_text("from-cred", encoding="utf-8")
    data = minimal()
    data["webhook"] = {"public_url": "https://example.org/hook"}
    path = write(tmp_path, data)
    hook = config.load(path, env={"CLOUDCONVERT_WEBHOOK_SECRET": "from-env"}).webhook
    assert hook is not None and hook.secret == config.Secret("from-env")
    hook = config.load(path, env={"CREDENTIALS_DIRECTORY": str(creds)}).webhook
    assert hook is not None and hook.secret == config.Secret("from-cred")


def test_secrets_never_appear_in_repr_str_or_dump(tmp_path: Path) -> None:
    """Neither the API key nor the webhook secret leaks through repr, str or dump."""
    data = minimal()
    data["webhook"] = {"public_url": "https://example.org/hook"}
    cfg = config.load(write(tmp_path, data), env={"CLOUDCONVERT_API_KEY": "sk-live-123",
                                                  "CLOUDCONVERT_WEBHOOK_SECRET": "whsec-456"})
    assert cfg.cloudconvert.api_key is not None and cfg.webhook is not None
    assert cfg.cloudconvert.api_key.reveal() == "sk-live-123"
    for text in (repr(cfg), str(cfg), config.dump(cfg), f"{cfg.cloudconvert.api_key}",
                 repr(cfg.webhook), str(cfg.webhook.secret)):
        assert "sk-live-123" not in text and "whsec-456" not in text
    assert "[secure]" in repr(cfg.cloudconvert)


def test_secret_equality_is_by_value() -> None:
    """Secrets compare by value and never equal a plain string."""
    assert config.Secret("a") == config.Secret("a")
    assert config.Secret("a") != config.Secret("b")
    assert config.Secret("a") != "a"
    assert len({config.Secret("a"), config.Secret("a")}) == 1


def test_lookup_order(tmp_path: Path) -> None:
    """--config, $CCWATCH_CONFIG, ./ccwatch.toml, the user config dir, /etc: first found wins."""
    cwd, user, system = tmp_path / "cwd", tmp_path / "user", tmp_path / "etc" / "config.toml"
    for d in (cwd, user, system.parent):
        d.mkdir(parents=True)
    explicit, from_env = write(tmp_path, "", "explicit.toml"), write(tmp_path, "", "env.toml")
    local, user_file = write(cwd, ""), write(user, "", "config.toml")
    system.write_text("", encoding="utf-8")

    def find(explicit_path: Path | None, env: dict[str, str]) -> Path:
        return config.find_config_path(explicit_path, env=env, cwd=cwd, user_config_dir=user,
                                       system_path=system)

    env = {"CCWATCH_CONFIG": str(from_env)}
    assert find(explicit, env) == explicit
    assert find(None, env) == from_env
    assert find(None, {}) == local
    local.unlink()
    assert find(None, {}) == user_file
    user_file.unlink()
    assert find(None, {}) == system
    system.unlink()
    with pytest.raises(ConfigError, match=r"^config: no configuration file found \(looked in"):
        find(None, {})


def test_named_config_that_is_missing_is_an_error(tmp_path: Path) -> None:
    """A file named by --config or $CCWATCH_CONFIG must exist: no silent fallback."""
    write(tmp_path, "")  # ./ccwatch.toml exists but must not be picked
    for explicit, env in ((tmp_path / "nope.toml", {}),
                          (None, {"CCWATCH_CONFIG": str(tmp_path / "nope.toml")})):
        with pytest.raises(ConfigError) as info:
            config.find_config_path(explicit, env=env, cwd=tmp_path)
        assert info.value.key == "config" and "nope.toml" in info.value.problem


@pytest.mark.parametrize(
    ("section", "base", "sync"),
    [
        ({}, "https://api.cloudconvert.com", "https://sync.api.cloudconvert.com"),
        ({"endpoint": "sandbox"}, "https://api.sandbox.cloudconvert.com",
         "https://sync.api.sandbox.cloudconvert.com"),
        ({"region": "us-east"}, "https://us-east.api.cloudconvert.com",
         "https://us-east.sync.api.cloudconvert.com"),
        ({"endpoint": "http://127.0.0.1:8400/"}, "http://127.0.0.1:8400",
         "http://127.0.0.1:8400/sync"),
        ({"endpoint": "https://cc.internal/api", "sync_endpoint": "https://sync.internal/"},
         "https://cc.internal/api", "https://sync.internal"),
    ],
)
def test_base_urls(tmp_path: Path, section: dict[str, str], base: str, sync: str) -> None:
    """REST and sync base URLs for live, sandbox, a region, and a custom URL (no trailing /)."""
    data = minimal()
    data["cloudconvert"] = section
    cc = config.load(write(tmp_path, data), env={}).cloudconvert
    assert (cc.base_url(), cc.sync_base_url()) == (base, sync)


def test_embedded_endpoint_has_no_url_until_the_daemon_starts_it() -> None:
    """base_url() refuses for embedded: the daemon substitutes the emulator's URL."""
    cc = config.CloudConvertConfig(endpoint="embedded")
    with pytest.raises(ValueError, match="embedded"):
        cc.base_url()


def test_state_dir_default_is_the_platform_state_dir() -> None:
    """An empty state_dir means the per-user platform state folder."""
    assert config.DaemonConfig().resolved_state_dir() == platformdirs.user_state_path("ccwatch")


def test_webhook_path_defaults_to_root() -> None:
    """A public URL without a path is served at /."""
    hook = config.WebhookConfig(public_url="https://example.org")
    assert (hook.path(), hook.host_port()) == ("/", ("127.0.0.1", 8765))


def test_ledger_defaults_to_sqlite_and_takes_a_postgresql_url(tmp_path: Path) -> None:
    """[ledger]: "" = SQLite; a postgresql:// URL is shared, its password never shown; round trips."""
    cfg = config.load(write(tmp_path, minimal()), env={})
    assert (cfg.ledger.url, cfg.ledger.shared, cfg.ledger.lease_s) == ("", False, 60.0)
    assert cfg.ledger.host_id()  # the machine's host name
    data = minimal()
    data["ledger"] = {"url": "postgresql://cc:s3cret@db.example.org:5433/ccwatch", "host": "b",
                      "lease_s": 5}
    cfg = config.load(write(tmp_path, data), env={})
    assert cfg.ledger.shared and cfg.ledger.host_id() == "b" and cfg.ledger.lease_s == 5
    assert cfg.ledger.display_url() == "postgresql://cc:***@db.example.org:5433/ccwatch"
    assert "s3cret" not in repr(cfg)
    assert round_trip(cfg, tmp_path / "again").ledger == cfg.ledger


@pytest.mark.parametrize(("ledger", "key"), [
    ({"url": "mysql://db/ccwatch"}, "ledger.url"),
    ({"url": "postgresql://db/ccwatch", "lease_s": 0}, "ledger.lease_s"),
    ({"hosts": "a"}, "ledger.hosts"),
])
def test_ledger_errors_name_their_key(tmp_path: Path, ledger: dict[str, Any], key: str) -> None:
    data = minimal()
    data["ledger"] = ledger
    assert load_error(tmp_path, data).key == key


def test_a_reload_keeps_what_needs_a_restart(tmp_path: Path) -> None:
    """Folders, rules and templates come from the new file; the sections opened at start stay."""
    from ccwatch.config.reload import reloadable

    running = config.load(write(tmp_path, minimal()), env={})
    data = minimal()
    data["daemon"] = {"max_in_flight": 2}
    data["folders"][0]["rules"][0]["match"] = ["*.odt"]
    new = config.load(write(tmp_path, data, "new.toml"), env={})
    merged, restart = reloadable(running, new)
    assert restart == ("daemon",)
    assert merged.daemon == running.daemon and merged.folders == new.folders
    assert reloadable(running, running) == (running, ())


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """One read names the problem of each section, template, folder and rule, not just the
    first; a rule whose template is broken adds no second line for the same cause."""
    data = minimal()
    data["cloudconvert"] = {"endpoint": "embeded"}
    data["daemon"] = {"max_in_flight": 0}
    data["templates"]["to-pdf"]["tasks"]["out"]["input"] = "nowhere"
    data["folders"][0]["rules"].append({"match": ["*.x"], "template": "zz"})
    err = load_error(tmp_path, data)
    assert err.exit_code == ExitCode.CONFIG
    lines = str(err).splitlines()
    assert lines[0] == "4 problems in the configuration:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "cloudconvert.endpoint", "daemon.max_in_flight", "templates.to-pdf.tasks.out.input",
        "folders[0].rules[1].template"]
    assert "no template 'zz' (known: 'to-pdf')" in lines[4]


@pytest.mark.parametrize(("value", "pasted"), [
    ("CLOUDCONVERT_API_KEY", False),
    ("CC_KEY_PROD_2", False),
    ("api-key", False),
    ("cloudconvert-api-key", False),
    ("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl", True),
    ("abcDEF0123456789abcdef0123456789XYZ", True),
])
def test_a_key_shaped_value_is_recognised(value: str, pasted: bool) -> None:
    assert looks_like_secret(value) is pasted


@pytest.mark.parametrize("pasted", ["abc def", "abc\u00a0def", "ab\u200bcd", "abc\tdef"])
def test_an_api_key_an_http_header_cannot_carry_is_refused(tmp_path: Path, pasted: str) -> None:
    """A key pasted with a space, a non-breaking space or a zero-width character inside would be
    refused by the client on every request; it is refused at start instead, without being shown."""
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, minimal()), env={"CLOUDCONVERT_API_KEY": pasted})
    assert info.value.key == "cloudconvert.api_key_env"
    assert "cannot carry" in str(info.value) and pasted not in str(info.value)
    (tmp_path / "key.txt").write_text(pasted + "\n")
    data = minimal() | {"cloudconvert": {"api_key_file": "key.txt"}}
    with pytest.raises(ConfigError) as from_file:
        config.load(write(tmp_path, data), env={})
    assert from_file.value.key == "cloudconvert.api_key_file"
