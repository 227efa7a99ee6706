"""The ``ccwatch`` command line (click). Maps errors to the exit codes of the design contract."""

from __future__ import annotations

from pathlib import Path

import click

from ccwatch import __version__


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
