"""The configuration as frozen dataclasses, and :class:`Secret` (never shown in a repr or log)."""

from __future__ import annotations

import hmac
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import platformdirs

from ccwatch.config.parse import split_listen
from ccwatch.config.templates import Template

if TYPE_CHECKING:
    from ccwatch.ledger import Ledger

REGIONS = ("", "eu-central", "us-east")
_HOSTS = {"live": "api.cloudconvert.com", "sandbox": "api.sandbox.cloudconvert.com"}
API_KEY_CREDENTIAL = "cloudconvert-api-key"
WEBHOOK_SECRET_CREDENTIAL = "cloudconvert-webhook-secret"
SYSTEM_CONFIG = Path("/etc/ccwatch/config.toml")


class Secret:
    """A secret string that never shows itself in ``repr``, ``str`` or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "[secure]"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class CloudConvertConfig:
    endpoint: str = "live"  # live | sandbox | embedded | an http(s):// base URL
    region: str = ""  # "" (nearest) | eu-central | us-east; live only
    sync_endpoint: str = ""  # "" = derived from endpoint
    api_key_env: str = "CLOUDCONVERT_API_KEY"
    api_key_file: Path | None = None
    timeout_s: float = 60.0
    api_key: Secret | None = field(default=None, compare=False)  # resolved at load, never dumped

    def base_url(self) -> str:
        """The REST base URL (no ``/v2``). ``embedded`` has none: the daemon starts the emulator."""
        if self.endpoint == "embedded":
            raise ValueError("the embedded endpoint's URL is known only once the emulator runs")
        if self.endpoint in _HOSTS:
            prefix = f"{self.region}." if self.region else ""
            return f"https://{prefix}{_HOSTS[self.endpoint]}"
        return self.endpoint.rstrip("/")

    def sync_base_url(self) -> str:
        """The base URL of the blocking "wait" API: ``sync.api…``, or ``<endpoint>/sync``."""
        if self.sync_endpoint:
            return self.sync_endpoint.rstrip("/")
        if self.endpoint in _HOSTS:
            prefix = f"{self.region}." if self.region else ""
            return f"https://{prefix}sync.{_HOSTS[self.endpoint]}"
        return f"{self.base_url()}/sync"


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    state_dir: Path | None = None  # None = the platform's per-user state dir
    max_in_flight: int = 16
    upload_workers: int = 4
    download_workers: int = 4
    poll_interval_s: float = 2.0
    poll_max_s: float = 30.0
    give_up_after_s: float = 86400.0
    job_timeout_s: float = 86400.0  # a job waiting/processing longer is deleted, its file quarantined
    shutdown_grace_s: float = 30.0
    log_format: str = "text"  # text | json
    log_level: str = "info"  # debug | info | warning
    hook_timeout_s: float = 60.0  # an on_done/on_failed command running longer is killed
    delete_jobs: bool = True  # delete each job on CloudConvert once its file is finished
    min_credits: int = 0  # hold new jobs while the account has fewer credits (0 = off)
    credits_check_s: float = 60.0  # how often users/me is read while min_credits > 0

    def resolved_state_dir(self) -> Path:
        """``state_dir``, else systemd's ``$STATE_DIRECTORY`` (StateDirectory=), else the platform's."""
        if self.state_dir:
            return self.state_dir
        systemd_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        return Path(systemd_dir) if systemd_dir else platformdirs.user_state_path("ccwatch")


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    # "" = SQLite in state_dir; "postgresql://…" = one ledger shared by several hosts. It may hold a
    # password, so it stays out of reprs: ``display_url`` is what logs and status show.
    url: str = field(default="", repr=False)
    host: str = ""  # the name this host's claims carry; "" = the machine's host name
    lease_s: float = 60.0  # a claim not renewed for this long is taken over by another host

    @property
    def shared(self) -> bool:
        return bool(self.url)

    def host_id(self) -> str:
        return self.host or socket.gethostname()

    def open(self, state_dir: Path, *, readonly: bool = False, folders: Sequence[str] = ()) -> Ledger:
        """The ledger these settings name: PostgreSQL, or SQLite in ``state_dir``. ``folders``: the
        names whose rows a daemon may queue or take over on a shared ledger (default: all)."""
        from ccwatch.ledger import open_ledger

        return open_ledger(self.url, state_dir=state_dir, host=self.host_id(), lease_s=self.lease_s,
                           display_url=self.display_url(), readonly=readonly, folders=folders)

    def display_url(self) -> str:
        """The URL without its password."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    listen: str = "127.0.0.1:8765"
    public_url: str = ""
    secret_env: str = "CLOUDCONVERT_WEBHOOK_SECRET"
    safety_poll_s: float = 60.0    # the slow poll that still runs per job, so a lost delivery only delays
    secret: Secret | None = field(default=None, compare=False)

    def host_port(self) -> tuple[str, int]:
        return split_listen(self.listen)

    def path(self) -> str:
        """The path part of ``public_url``: where the receiver expects CloudConvert's POSTs."""
        return urlsplit(self.public_url).path or "/"


@dataclass(frozen=True, slots=True)
class HttpConfig:
    listen: str = ""  # "host:port" serves the status page, /metrics and /healthz; "" = off

    def host_port(self) -> tuple[str, int] | None:
        return split_listen(self.listen) if self.listen else None


@dataclass(frozen=True, slots=True)
class Rule:
    match: tuple[str, ...]  # globs on the path relative to the input, case-insensitive
    template: str
    output_name: str = "{stem}.{ext}"
    on_conflict: str = "rename"  # rename | overwrite | skip
    # argv run after delivery / quarantine; () = the folder's (environment: docs/operations.md)
    on_done: tuple[str, ...] = ()
    on_failed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FolderConfig:
    name: str
    input: Path
    output: Path
    quarantine: Path
    recursive: bool = True
    watch: str = "auto"  # auto | events | poll
    poll_s: float = 5.0
    rescan_s: float = 300.0
    settle_s: float = 2.0
    originals: str = "keep"  # keep | delete | move
    archive: Path | None = None
    ignore: tuple[str, ...] = ()
    max_file_size: int = 1_000_000_000
    rules: tuple[Rule, ...] = ()
    # Output may be the input itself or inside it (desktop style: x.heic gains x.jpg beside it);
    # ccwatch then skips its own outputs, known from the ledger and, below the input, the config.
    in_place: bool = False
    on_done: tuple[str, ...] = ()  # for rules that set none
    on_failed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    cloudconvert: CloudConvertConfig
    daemon: DaemonConfig
    webhook: WebhookConfig | None
    templates: Mapping[str, Template]
    folders: tuple[FolderConfig, ...]
    ledger: LedgerConfig = LedgerConfig()
    http: HttpConfig = field(default_factory=HttpConfig)
    source: Path | None = field(default=None, compare=False)  # the file it came from
    # Folders the TOML gave as relative paths: check_folders creates them when missing (absolute
    # paths may be unmounted shares and are never created).
    auto_create: frozenset[Path] = field(default=frozenset(), compare=False, repr=False)


