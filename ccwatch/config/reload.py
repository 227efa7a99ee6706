"""What a reload (SIGHUP, ``systemctl reload``) may change while the daemon runs.

Folders, their rules and the templates are re-read; they apply to files admitted from then on.
The rest (the account and endpoint, the state dir and the ledger, worker counts, the webhook and
HTTP listeners) belongs to resources opened at start: a changed value there is reported and takes
effect at the next restart.
"""

from __future__ import annotations

from dataclasses import replace

from ccwatch.config.model import Config

RESTART_SECTIONS = ("cloudconvert", "daemon", "ledger", "webhook", "http")


def reloadable(running: Config, new: Config) -> tuple[Config, tuple[str, ...]]:
    """``new`` with the sections that need a restart kept as they run, and the names of those
    sections that differ (to say so)."""
    differ = tuple(name for name in RESTART_SECTIONS
                   if getattr(running, name) != getattr(new, name)
                   or (name == "cloudconvert" and running.cloudconvert.api_key
                       != new.cloudconvert.api_key))
    kept = replace(new, cloudconvert=running.cloudconvert, daemon=running.daemon,
                   ledger=running.ledger, webhook=running.webhook, http=running.http)
    return kept, differ
