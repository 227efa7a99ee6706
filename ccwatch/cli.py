"""The ``ccwatch`` command line (click). Maps errors to the exit codes of the design contract."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ccwatch import __version__, config, logs
from ccwatch.config import Config
from ccwatch.daemon import Daemon, Runtime, open_runtime, run_once
from ccwatch.errors import CcwatchError, ConfigError, ExitCode


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ccwatch")
def main() -> None:
    """Watch folders and convert what lands in them through CloudConvert."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8400, show_default=True, type=int, help="Port (0 = any free port).")
@click.option("--api-key", default="emulator-key", show_default=True, help="Bearer key to accept.")
@click.option("--webhook-secret", default="emulator-secret", show_default=True,
              help="Secret that signs webhook deliveries.")
@click.option("--latency-s", default=0.0, show_default=True, type=float,
              help="Processing time added to every job.")
@click.option("--storage", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for uploaded and converted files (default: a temporary folder).")
def emulator(host: str, port: int, api_key: str, webhook_secret: str, latency_s: float,
             storage: Path | None) -> None:
    """Serve the local CloudConvert-compatible API."""
    from ccwatch.emulator import run_forever

    run_forever(host=host, port=port, api_key=api_key, webhook_secret=webhook_secret,
                latency_s=latency_s, storage=storage)


def _fail(err: CcwatchError) -> NoReturn:
    click.echo(f"ccwatch: error: {err}", err=True)
    sys.exit(int(err.exit_code))


def _load_config(config_path: Path | None) -> Config:
    try:
        return config.load(config.find_config_path(config_path))
    except ConfigError as err:
        _fail(err)


@main.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Configuration file (default: $CCWATCH_CONFIG, ./ccwatch.toml, user, /etc).")
@click.option("--once", is_flag=True,
              help="Convert what is in the folders now, show progress, then exit.")
def run(config_path: Path | None, once: bool) -> None:
    """Run the daemon (or one pass with --once)."""
    cfg = _load_config(config_path)
    logs.setup(cfg.daemon.log_format)
    try:
        with open_runtime(cfg) as runtime:
            if once:
                code = _run_once_with_progress(runtime)
                sys.exit(int(code))
            d = Daemon(runtime)
            d.install_signal_handlers()
            drained = d.run()
    except CcwatchError as err:
        _fail(err)
    if not drained:
        # Pool threads would otherwise hold the exit until their transfers end; the ledger
        # already has everything the next start needs.
        sys.stderr.flush()
        os._exit(0)


def _run_once_with_progress(runtime: Runtime) -> ExitCode:
    console = Console(stderr=True)
    columns = (TextColumn("converting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task("convert", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=max(total, done) or None)

        code = run_once(runtime, on_progress=on_progress)
    p = runtime.pipeline
    click.echo(f"{p.delivered} converted, {p.failed} failed", err=True)
    return code
