"""The TOML configuration: read (:mod:`.loader`), typed (:mod:`.model`), checked against the disk
(:mod:`.folders`), written back (:mod:`.writer`), and the job templates it names (:mod:`.templates`).

``from ccwatch import config; config.load(path)`` is the public entry point.
"""

from ccwatch.config.loader import check_folders, dump, find_config_path, load, loads
from ccwatch.config.model import (
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

__all__ = [
    "CloudConvertConfig", "Config", "DaemonConfig", "FolderConfig", "HttpConfig", "LedgerConfig",
    "Rule", "Secret", "WebhookConfig", "check_folders", "dump", "find_config_path", "load", "loads",
]
