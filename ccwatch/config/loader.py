"""The TOML configuration as frozen dataclasses: ``find_config_path``, ``load``, ``dump``.

Every problem is a :class:`~ccwatch.errors.ConfigError` naming its dotted key
(``folders[1].rules[0].template: no template 'pdf2'``). Relative paths are resolved against the
config file's folder; folder checks (exist, writable, no output inside a watched input) live in
:mod:`ccwatch.config.folders` and run as part of :func:`load`.
"""

from __future__ import annotations

import functools
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar
from urllib.parse import urlsplit

import platformdirs

from ccwatch.config.folders import verify_folders
from ccwatch.config.model import (
    API_KEY_CREDENTIAL,
    REGIONS,
    SYSTEM_CONFIG,
    TRACKING,
    WEBHOOK_SECRET_CREDENTIAL,
    CloudConvertConfig,
    Config,
    DaemonConfig,
    FolderConfig,
    HttpConfig,
    LedgerConfig,
    Rule,
    Secret,
    WebhookConfig,
)
from ccwatch.config.parse import (
    Table,
    parse_endpoint,
    read_secret,
    refuse_pasted_secret,
    show,
    split_listen,
)
from ccwatch.config.templates import Template, check_output_name, load_template_file, parse_template
from ccwatch.config.writer import dump_toml
from ccwatch.errors import ConfigError


def find_config_path(explicit: Path | None, *, env: Mapping[str, str] | None = None,
                     cwd: Path | None = None, user_config_dir: Path | None = None,
                     system_path: Path = SYSTEM_CONFIG) -> Path:
    """``--config``, ``$CCWATCH_CONFIG``, ``./ccwatch.toml``, the user config dir, /etc/ccwatch."""
    env = os.environ if env is None else env
    named = explicit if explicit is not None else (
        Path(env["CCWATCH_CONFIG"]) if env.get("CCWATCH_CONFIG") else None)
    if named is not None:
        # A file the user named must exist: falling back to another one would hide the mistake.
        if not named.is_file():
            origin = "--config" if explicit is not None else "$CCWATCH_CONFIG"
            raise ConfigError("config", f"{named} (from {origin}) is not a file")
        return named
    user_dir = user_config_dir or platformdirs.user_config_path("ccwatch")
    candidates = [(cwd or Path.cwd()) / "ccwatch.toml", user_dir / "config.toml", system_path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise ConfigError("config", f"no configuration file found (looked in: --config, "
                      f"$CCWATCH_CONFIG, {looked}); write one with `ccwatch init`")


def load(path: Path, *, env: Mapping[str, str] | None = None,
         check_folders: bool = True) -> Config:
    """Read, validate and (unless ``check_folders=False``) check the folders of a config file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path.name, f"cannot read {path}: {exc}") from exc
    return _load_text(text, label=path.name, base_dir=path.absolute().parent, env=env,
                      check=check_folders, source=path.absolute())


def loads(text: str, *, base_dir: Path, env: Mapping[str, str] | None = None,
          check_folders: bool = True) -> Config:
    """Like :func:`load` for TOML text; relative paths are resolved against ``base_dir``."""
    return _load_text(text, label="config", base_dir=base_dir.absolute(), env=env,
                      check=check_folders, source=None)


def check_folders(config: Config) -> None:
    """Folders exist (relative ones are created) and are writable; outputs not inside inputs."""
    verify_folders(config)


def dump(config: Config) -> str:
    """The config as TOML (absolute paths, every key); secrets are never written."""
    return dump_toml(config)


def _load_text(text: str, *, label: str, base_dir: Path, env: Mapping[str, str] | None,
               check: bool, source: Path | None) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message carries "(at line L, column C)"
        raise ConfigError(label, f"invalid TOML: {exc}") from exc
    config = _build(Table(data, ""), base_dir=base_dir,
                    env=os.environ if env is None else env, source=source)
    if check:
        verify_folders(config)
    return config


T = TypeVar("T")


class _AlreadyReported(Exception):
    """This part cannot be read because of a problem recorded elsewhere (a broken template)."""


class _Problems:
    """Collects the configuration's problems so that all are reported at once, not one per try.
    Each section, template, folder and rule is read on its own; the first problem in one of them
    is its problem."""

    def __init__(self) -> None:
        self.found: list[ConfigError] = []

    def attempt(self, read: Callable[[], T]) -> T | None:
        try:
            return read()
        except ConfigError as err:
            self.found.append(err)
            return None
        except _AlreadyReported:
            return None

    def raise_any(self) -> None:
        if len(self.found) == 1:
            raise self.found[0]
        if self.found:
            lines = "\n".join(f"  {err}" for err in self.found)
            raise ConfigError("", f"{len(self.found)} problems in the configuration:\n{lines}")


def _build(top: Table, *, base_dir: Path, env: Mapping[str, str],
           source: Path | None) -> Config:
    p = _Problems()
    cloudconvert = p.attempt(lambda: _cloudconvert(
        top.table("cloudconvert") or Table({}, "cloudconvert"), base_dir, env))
    daemon = p.attempt(lambda: _daemon(top.table("daemon") or Table({}, "daemon"), base_dir))
    ledger = p.attempt(lambda: _ledger(top.table("ledger") or Table({}, "ledger")))
    webhook_table = p.attempt(lambda: top.table("webhook"))
    webhook = p.attempt(lambda: _webhook(webhook_table, env)) if webhook_table is not None else None
    http = p.attempt(lambda: _http(top.table("http") or Table({}, "http")))
    templates_table = p.attempt(lambda: top.table("templates")) or Table({}, "templates")
    templates, broken = _templates(templates_table, base_dir, p)
    auto_create: set[Path] = set()
    folder_tables = p.attempt(lambda: top.tables("folders"))
    if folder_tables == []:
        p.found.append(ConfigError("folders", "at least one [[folders]] entry is required"))
    read = [p.attempt(functools.partial(_folder, t, base_dir, templates, broken, auto_create, p))
            for t in folder_tables or []]
    folders = tuple(f for f in read if f is not None)
    seen: dict[str, int] = {}
    for i, folder in enumerate(read):
        if folder is None:
            continue
        if folder.name in seen:
            p.found.append(ConfigError(f"folders[{i}].name", f"\"{folder.name}\" is already the "
                                       f"name of folders[{seen[folder.name]}] (names must be unique)"))
        seen[folder.name] = i
    p.attempt(top.finish)
    p.raise_any()
    assert cloudconvert is not None and daemon is not None and ledger is not None
    assert http is not None
    return Config(cloudconvert=cloudconvert, daemon=daemon, webhook=webhook,
                  templates=MappingProxyType(templates), folders=folders, ledger=ledger,
                  http=http, source=source, auto_create=frozenset(auto_create))


def _cloudconvert(t: Table, base_dir: Path, env: Mapping[str, str]) -> CloudConvertConfig:
    endpoint = parse_endpoint(t.string("endpoint", "live"), key=t.sub("endpoint"), named=True)
    region = t.choice("region", "", REGIONS)
    if region and endpoint != "live":
        raise ConfigError(t.sub("region"), f"only applies to endpoint = \"live\", "
                          f"not {show(endpoint)}")
    sync = t.string("sync_endpoint", "")
    sync = parse_endpoint(sync, key=t.sub("sync_endpoint"), named=False) if sync else ""
    api_key_env = t.string("api_key_env", "CLOUDCONVERT_API_KEY")
    refuse_pasted_secret(api_key_env, key=t.sub("api_key_env"), what="an API key")
    api_key_file, _ = t.path("api_key_file", base_dir, required=False)
    if api_key_file is not None:
        refuse_pasted_secret(api_key_file.name, key=t.sub("api_key_file"), what="an API key")
    timeout_s = t.duration("timeout_s", 60.0)
    t.finish()
    key = read_secret(env=env, env_name=api_key_env, file=api_key_file,
                      credential=API_KEY_CREDENTIAL, key=t.sub("api_key_file"))
    if key is not None and not (key.isascii() and key.isprintable() and " " not in key):
        where = api_key_env if env.get(api_key_env, "").strip() else "the key file"
        raise ConfigError(t.sub("api_key_env" if where == api_key_env else "api_key_file"),
                          f"the API key in {where} has a space, a line break or a non-ASCII "
                          "character, which an HTTP header cannot carry: paste it again")
    return CloudConvertConfig(
        endpoint=endpoint, region=region, sync_endpoint=sync, api_key_env=api_key_env,
        api_key_file=api_key_file, timeout_s=timeout_s,
        api_key=Secret(key) if key is not None else None,
    )


def _daemon(t: Table, base_dir: Path) -> DaemonConfig:
    state_dir, _ = t.path("state_dir", base_dir, required=False)
    daemon = DaemonConfig(
        state_dir=state_dir,
        max_in_flight=t.integer("max_in_flight", 16, minimum=1),
        upload_workers=t.integer("upload_workers", 4, minimum=1),
        download_workers=t.integer("download_workers", 4, minimum=1),
        poll_interval_s=t.duration("poll_interval_s", 2.0),
        poll_max_s=t.duration("poll_max_s", 30.0),
        give_up_after_s=t.duration("give_up_after_s", 86400.0),
        job_timeout_s=t.duration("job_timeout_s", 86400.0),
        shutdown_grace_s=t.duration("shutdown_grace_s", 30.0, allow_zero=True),
        log_format=t.choice("log_format", "text", ("text", "json")),
        log_level=t.choice("log_level", "info", ("debug", "info", "warning")),
        hook_timeout_s=t.duration("hook_timeout_s", 60.0),
        delete_jobs=t.boolean("delete_jobs", True),
        min_credits=t.integer("min_credits", 0, minimum=0),
        credits_check_s=t.duration("credits_check_s", 60.0),
        tracking=t.choice("tracking", "wait", TRACKING),
    )
    if daemon.poll_max_s < daemon.poll_interval_s:
        raise ConfigError(t.sub("poll_max_s"), f"must be >= poll_interval_s "
                          f"({daemon.poll_interval_s:g}), got {daemon.poll_max_s:g}")
    t.finish()
    return daemon


def _ledger(t: Table) -> LedgerConfig:
    url = t.string("url", "")
    if url and urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise ConfigError(t.sub("url"), "must be \"\" (SQLite in daemon.state_dir) or a "
                          "postgresql://… URL")
    ledger = LedgerConfig(url=url, host=t.string("host", ""), lease_s=t.duration("lease_s", 60.0))
    t.finish()
    return ledger


def _http(t: Table) -> HttpConfig:
    listen = t.string("listen", "")
    if listen:
        try:
            split_listen(listen)
        except ValueError:
            raise ConfigError(t.sub("listen"), f"must be host:port such as \"127.0.0.1:8766\" "
                              f"(or \"\" for off), got {show(listen)}") from None
    t.finish()
    return HttpConfig(listen=listen)


def _webhook(t: Table, env: Mapping[str, str]) -> WebhookConfig:
    listen = t.string("listen", "127.0.0.1:8765")
    try:
        split_listen(listen)
    except ValueError:
        raise ConfigError(t.sub("listen"), f"must be host:port such as \"127.0.0.1:8765\", "
                          f"got {show(listen)}") from None
    public_url = t.required_string("public_url")
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(t.sub("public_url"), f"must be the http(s):// URL CloudConvert posts "
                          f"to, got {show(public_url)}")
    secret_env = t.string("secret_env", "CLOUDCONVERT_WEBHOOK_SECRET")
    refuse_pasted_secret(secret_env, key=t.sub("secret_env"), what="a webhook secret")
    safety_poll_s = t.duration("safety_poll_s", 60.0)
    t.finish()
    secret = read_secret(env=env, env_name=secret_env, file=None,
                         credential=WEBHOOK_SECRET_CREDENTIAL, key=t.sub("secret_env"))
    return WebhookConfig(listen=listen, public_url=public_url, secret_env=secret_env,
                         safety_poll_s=safety_poll_s, secret=Secret(secret) if secret is not None else None)


def _templates(t: Table, base_dir: Path, p: _Problems) -> tuple[dict[str, Template], set[str]]:
    """The templates that read well, and the names of those that did not."""
    templates: dict[str, Template] = {}
    broken: set[str] = set()
    for name in t.data:
        template = p.attempt(functools.partial(_template, t, name, base_dir))
        if template is None:
            broken.add(name)
        else:
            templates[name] = template
    return templates, broken


def _template(t: Table, name: str, base_dir: Path) -> Template:
    entry = t.table(name)
    assert entry is not None  # name comes from the table's own keys
    if entry.has("file"):
        if entry.has("tasks") or entry.has("tag"):
            raise ConfigError(entry.key, "give either file or tasks (with tag), not both")
        path, _ = entry.path("file", base_dir, required=True)
        assert path is not None  # required=True
        entry.finish()
        return load_template_file(name, path, key=entry.key)
    if not entry.has("tasks"):
        raise ConfigError(entry.key, "needs file = \"….json\" or [" + entry.key
                          + ".tasks.NAME] tables")
    tasks, tag = entry.raw("tasks"), entry.raw("tag")
    entry.finish()
    data = {"tasks": tasks} if tag is None else {"tasks": tasks, "tag": tag}
    return parse_template(name, data, key=entry.key)


def _folder(t: Table, base_dir: Path, templates: Mapping[str, Template], broken: set[str],
            auto_create: set[Path], p: _Problems) -> FolderConfig | None:
    """A folder, or None when one of its rules has a problem (recorded in ``p``)."""
    paths: dict[str, Path | None] = {}
    for name in ("input", "output", "quarantine", "archive"):
        path, relative = t.path(name, base_dir, required=name != "archive")
        paths[name] = path
        if relative and path is not None:
            auto_create.add(path)
    input_dir, output, quarantine = paths["input"], paths["output"], paths["quarantine"]
    assert input_dir is not None and output is not None and quarantine is not None
    folder_name = t.string("name", "") if t.has("name") else (input_dir.name or str(input_dir))
    if not folder_name.strip():
        raise ConfigError(t.sub("name"), "must not be empty")
    originals = t.choice("originals", "keep", ("keep", "delete", "move"))
    if originals == "move" and paths["archive"] is None:
        raise ConfigError(t.sub("archive"), "is required when originals = \"move\"")
    rule_tables = t.tables("rules")
    if not rule_tables:
        raise ConfigError(t.sub("rules"), "at least one [[folders.rules]] entry is required")
    rules = [p.attempt(functools.partial(_rule, r, templates, broken)) for r in rule_tables]
    folder = FolderConfig(
        name=folder_name, input=input_dir, output=output, quarantine=quarantine,
        recursive=t.boolean("recursive", True),
        watch=t.choice("watch", "auto", ("auto", "events", "poll")),
        poll_s=t.duration("poll_s", 5.0),
        rescan_s=t.duration("rescan_s", 300.0),
        settle_s=t.duration("settle_s", 2.0, allow_zero=True),
        originals=originals, archive=paths["archive"],
        ignore=t.strings("ignore"),
        max_file_size=t.size("max_file_size", 1_000_000_000),
        rules=tuple(r for r in rules if r is not None),
        in_place=t.boolean("in_place", False),
        on_done=t.strings("on_done"),
        on_failed=t.strings("on_failed"),
    )
    t.finish()
    return folder if len(folder.rules) == len(rule_tables) else None


def _rule(t: Table, templates: Mapping[str, Template], broken: set[str]) -> Rule:
    match = t.strings("match") if t.has("match") else ()
    if not match:
        raise ConfigError(t.sub("match"), 'needs at least one glob, such as ["*.docx"]')
    template = t.required_string("template")
    if template in broken:
        raise _AlreadyReported(template)
    if template not in templates:
        known = ", ".join(f"'{n}'" for n in sorted([*templates, *broken])) or "none defined"
        raise ConfigError(t.sub("template"), f"no template '{template}' (known: {known})")
    output_name = t.string("output_name", "{stem}.{ext}")
    check_output_name(output_name, key=t.sub("output_name"))
    on_conflict = t.choice("on_conflict", "rename", ("rename", "overwrite", "skip"))
    on_done, on_failed = t.strings("on_done"), t.strings("on_failed")
    t.finish()
    return Rule(match=match, template=template, output_name=output_name,
                on_conflict=on_conflict, on_done=on_done, on_failed=on_failed)
