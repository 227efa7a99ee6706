"""``ccwatch check``: everything the daemon would verify at start, reported all at once.

Where ``run`` stops at the first problem, ``check`` goes on and lists each one, then exits with
the code the daemon would have: 2 for the configuration (folders, webhook), 3 for the account
(no key, 401, 402). An unreachable API is only a warning: the daemon starts and retries; so is
a 403 on the account call, which needs a scope (user.read) the daemon does not.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ccwatch import fs, watch
from ccwatch.client.api import CloudConvertClient
from ccwatch.client.syncwait import proxy_named
from ccwatch.clock import SystemClock, iso
from ccwatch.commands.status import bad_signatures, ledger_path
from ccwatch.config import Config, FolderConfig, WebhookConfig
from ccwatch.config.folders import check_nesting, ensure_folder
from ccwatch.errors import AccountError, CcwatchError, ConfigError, ExitCode, TransientError
from ccwatch.ledger import Ledger
from ccwatch.webhook import BAD_SIGNATURES

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # ok | warn | fail
    subject: str  # what was checked: "folders[0].input", "api", "webhook.listen", …
    message: str
    exit_code: ExitCode = ExitCode.OK  # for a failure: the exit code it maps to


@dataclass(slots=True)
class Report:
    findings: list[Finding] = field(default_factory=list)

    def add(self, level: str, subject: str, message: str,
            exit_code: ExitCode = ExitCode.OK) -> None:
        self.findings.append(Finding(level, subject, message, exit_code))

    @property
    def exit_code(self) -> ExitCode:
        """Config problems first (nothing runs), then account ones."""
        codes = {f.exit_code for f in self.findings if f.level == FAIL}
        for code in (ExitCode.CONFIG, ExitCode.ACCOUNT):
            if code in codes:
                return code
        return ExitCode.OK


def run_checks(config: Config) -> Report:
    """``config`` was loaded with ``check_folders=False``: the folder checks happen here."""
    report = Report()
    names = ", ".join(config.templates) or "none"
    report.add(OK, "templates", f"{len(config.templates)} valid ({names})")
    _folders(config, report)
    _state_dir(config, report)
    if config.ledger.shared:
        _shared_ledger(config, report)
    _api(config, report)
    _tracking(config, report)
    if config.webhook is not None:
        _webhook(config.webhook, report)
        _webhook_secret(config, config.webhook, report)
    return report


def _tracking(config: Config, report: Report) -> None:
    """Which of the three ways the daemon learns that a job ended, and why."""
    if config.webhook is not None:
        how = ("webhook: CloudConvert posts each job's end to the receiver (a poll every "
               f"{config.webhook.safety_poll_s:g} s per job still runs as a safety net)")
    elif config.daemon.tracking == "wait":
        embedded = config.cloudconvert.endpoint == "embedded"
        sync = "the embedded engine's" if embedded else config.cloudconvert.sync_base_url()
        proxy = None if embedded else proxy_named(urlsplit(sync))
        if proxy:
            how = (f"poll: an HTTP proxy ({proxy}) is set for the sync host ({sync}), and waits "
                   "do not go through proxies, so each job's status is read after "
                   f"{config.daemon.poll_interval_s:g} s, then 1.5 times later each time up to "
                   f"{config.daemon.poll_max_s:g} s (unset the proxy for it with NO_PROXY to "
                   "wait instead)")
        else:
            how = (f"wait: each job is waited on through the sync host ({sync}) and seen as it "
                   "ends; a job the sync host cannot wait on is polled")
    else:
        how = (f"poll: each job's status is read after {config.daemon.poll_interval_s:g} s, then "
               f"1.5 times later each time up to {config.daemon.poll_max_s:g} s")
    report.add(OK, "daemon.tracking", how)


def _folder_paths(config: Config) -> Iterator[tuple[str, Path]]:
    for i, folder in enumerate(config.folders):
        for name in ("input", "output", "quarantine", "archive"):
            path: Path | None = getattr(folder, name)
            if path is not None:
                yield f"folders[{i}].{name}", path


def _folders(config: Config, report: Report) -> None:
    try:
        check_nesting(config)
    except ConfigError as err:
        report.add(FAIL, err.key, err.problem, ExitCode.CONFIG)
    for key, path in _folder_paths(config):
        try:
            ensure_folder(path, key=key, create=path in config.auto_create)
        except ConfigError as err:
            report.add(FAIL, key, err.problem, ExitCode.CONFIG)
        else:
            report.add(OK, key, f"{path} (writable)")
    for i, folder in enumerate(config.folders):
        if folder.input.is_dir():
            mode, reason = watch.choose_mode(folder.input, folder.watch)
            report.add(OK, f"folders[{i}].watch", f"'{folder.name}' will use {mode}: {reason}")
        if folder.in_place:
            level, message = explain_in_place(folder)
            report.add(level, f"folders[{i}].in_place", message)


def explain_in_place(folder: FolderConfig) -> tuple[str, str]:
    """What ``in_place = true`` does for this folder, in a sentence for ``check``."""
    never = ("its own outputs are recognised from the ledger (their paths are recorded before "
             "they appear) and never converted again, even where a rule matches them; temp files "
             "(.ccwatch-*.tmp) are never inputs")
    if folder.output == folder.input:
        return OK, (f"outputs are written beside their inputs in {folder.input}; {never}. "
                    "Deleting the ledger forgets which files are outputs")
    if folder.output.is_relative_to(folder.input):
        return OK, (f"outputs go to {folder.output}, inside the input; nothing under it is taken "
                    f"as an input, and elsewhere {never}")
    return WARN, (f"has no effect: the output {folder.output} is outside the input "
                  f"{folder.input}")


def _state_dir(config: Config, report: Report) -> None:
    ledger = ledger_path(config)
    state_dir = ledger.parent
    existing = state_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the daemon creates the missing part: its parent must allow it
    problem = fs.writable_problem(existing)
    if problem:
        report.add(FAIL, "daemon.state_dir", f"the ledger cannot be written in {state_dir}: "
                   f"{problem}", ExitCode.CONFIG)
    else:
        if config.ledger.shared:
            report.add(OK, "daemon.state_dir", f"{state_dir} (the lock; the ledger is shared)")
        else:
            report.add(OK, "daemon.state_dir", f"ledger {ledger}"
                       + ("" if ledger.exists() else " (created on first run)"))


def _shared_ledger(config: Config, report: Report) -> None:

    try:
        ledger = config.ledger.open(config.daemon.resolved_state_dir(), readonly=True)
    except ConfigError as err:
        report.add(FAIL, err.key, err.problem, ExitCode.CONFIG)
        return
    try:
        made = ledger.exists()
    finally:
        ledger.close()
    report.add(OK, "ledger.url", f"{config.ledger.display_url()} reachable, shared as host "
               f"{config.ledger.host_id()}" + ("" if made else " (tables created on first run)"))


def _api(config: Config, report: Report) -> None:
    cc = config.cloudconvert
    if cc.endpoint == "embedded":
        report.add(OK, "api", "embedded engine: no account needed, no network used")
        return
    key = cc.api_key.reveal() if cc.api_key else None
    if not key:
        report.add(FAIL, "cloudconvert.api_key_env", f"no API key: set ${cc.api_key_env}, "
                   "cloudconvert.api_key_file, or the systemd credential cloudconvert-api-key",
                   ExitCode.ACCOUNT)
        return
    client = CloudConvertClient(cc.base_url(), cc.sync_base_url(), key,
                                timeout_s=min(cc.timeout_s, 20.0), clock=SystemClock())
    try:
        user = client.me()
    except AccountError as err:
        if err.http_status == 403:  # only this call needs user.read; the daemon does not
            report.add(WARN, "api", f"{cc.base_url()}: the key may not read the account (403, "
                       "scope user.read), so credits are unknown; converting needs task.read "
                       "and task.write")
        else:
            report.add(FAIL, "api", f"{cc.base_url()}: {err.message}", ExitCode.ACCOUNT)
        return
    except TransientError as err:
        report.add(WARN, "api", f"{cc.base_url()} is not reachable now ({err.message}); the "
                   "daemon would start and keep retrying")
        return
    except CcwatchError as err:  # e.g. 404: the endpoint is not a CloudConvert API
        report.add(FAIL, "cloudconvert.endpoint", f"{cc.base_url()}: {err.message}",
                   ExitCode.CONFIG)
        return
    finally:
        client.close()
    who = user.get("username") or user.get("email") or user.get("id") or "?"
    credits = user.get("credits")
    if isinstance(credits, int | float) and credits <= 0:
        report.add(WARN, "api", f"{cc.base_url()}: account {who} has no credits left: jobs will "
                   "be refused (402) and submissions paused")
    else:
        report.add(OK, "api", f"{cc.base_url()}: account {who}, {credits} credits left")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _webhook(hook: WebhookConfig, report: Report) -> None:
    if hook.secret is None:
        report.add(FAIL, "webhook.secret_env", f"no webhook secret: set ${hook.secret_env} or the "
                   "systemd credential cloudconvert-webhook-secret", ExitCode.CONFIG)
    host, port = hook.host_port()
    report.add(*_bind_result(host, port, hook.listen))
    parts = urlsplit(hook.public_url)
    host_name = parts.hostname or ""
    if parts.scheme != "https" and not _loopback(host_name):
        report.add(WARN, "webhook.public_url", f"{hook.public_url} is not https: CloudConvert "
                   "posts job results over the internet; put TLS in front (a reverse proxy)")
    elif parts.path in ("", "/"):
        report.add(WARN, "webhook.public_url", f"{hook.public_url} has no path: the receiver "
                   "then answers on /, so any stray request reaches it; use e.g. /ccwatch/webhook")
    else:
        report.add(OK, "webhook.public_url", f"{hook.public_url} (receiver path {hook.path()})")


def _webhook_secret(config: Config, hook: WebhookConfig, report: Report) -> None:
    """Which secret signs deliveries to a job's own ``webhook_url`` is documented nowhere: say how
    to confirm it, and what the running daemon has seen so far."""
    bad = None
    if ledger_path(config).is_file():
        try:
            ledger = Ledger(ledger_path(config), readonly=True)
            try:
                bad = bad_signatures(ledger.get_meta(BAD_SIGNATURES))
            finally:
                ledger.close()
        except sqlite3.Error:
            pass  # _state_dir reports an unreadable ledger
    how = (f"CloudConvert does not document which secret signs deliveries to a job's own "
           f"webhook_url (ccwatch sets it on every job): ${hook.secret_env} should hold the "
           f"signing secret CloudConvert shows for a webhook made in its dashboard. To confirm "
           f"it, let "
           f"the daemon convert one file and run `ccwatch status`: refused deliveries for a bad "
           f"signature are counted there; while they are, files still move by the safety poll "
           f"(every {hook.safety_poll_s:g} s)")
    if bad is None:
        report.add(OK, "webhook.secret_env", f"no delivery refused for its signature yet. {how}")
    else:
        report.add(WARN, "webhook.secret_env",
                   f"{bad.count} deliveries refused for a bad signature since the daemon started "
                   f"(last at {iso(bad.last_at)}): if they came from CloudConvert, "
                   f"${hook.secret_env} is not the secret it signs with. {how}")


def _bind_result(host: str, port: int, listen: str) -> tuple[str, str, str, ExitCode]:
    """Can the receiver bind ``listen``? Binds a socket and lets it go at once."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except OSError as exc:
        return FAIL, "webhook.listen", f"{listen}: {exc.strerror or exc}", ExitCode.CONFIG
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        if os.name == "posix":  # as the real receiver does: a socket in TIME_WAIT is no conflict
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            hint = " (is ccwatch already running?)" if exc.errno == errno.EADDRINUSE else ""
            return (FAIL, "webhook.listen", f"cannot listen on {listen}: "
                    f"{exc.strerror or exc}{hint}", ExitCode.CONFIG)
    return OK, "webhook.listen", f"{listen} is free for the receiver", ExitCode.OK
