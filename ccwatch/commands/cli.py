"""The ``ccwatch`` command line (click). Maps errors to the exit codes in docs/operations.md."""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from ccwatch import __version__, config, logs
from ccwatch.config import Config
from ccwatch.errors import CcwatchError, ConfigError, ExitCode

# Wide enough that tables never wrap when the output is not a terminal.
NOT_A_TERMINAL_WIDTH = 1000

# At exit the interpreter collects the whole heap over and over as it tears modules down: ~0.1 s
# of CPU and wall at the end of every command. Everything that must be closed is closed before
# (the runtime explicitly, the log sinks by loguru's own exit hook), so the heap is frozen instead.
atexit.register(gc.freeze)

if TYPE_CHECKING:
    from rich.console import Console

    from ccwatch.commands.units import Platform
    from ccwatch.daemon import Runtime


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
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"Write the log to this file instead of stderr (text, rotated at "
                   f"{logs.LOG_FILE_ROTATION}); the macOS and Windows services use it.")
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level (overrides log_level).")
def run(config_path: Path | None, once: bool, log_file: Path | None, verbose: bool) -> None:
    """Run the daemon (or one pass with --once)."""
    # Imported here: the daemon's dependencies cost a second that status, retry and init skip.
    from ccwatch.daemon import Daemon, open_runtime
    from ccwatch.process import install_signal_handlers

    cfg = _load_config(config_path)
    logs.setup(cfg.daemon.log_format, log_file=log_file,
               level="DEBUG" if verbose else cfg.daemon.log_level.upper())
    try:
        with open_runtime(cfg) as runtime:
            if once:
                stop = threading.Event()
                install_signal_handlers(stop)
                code = _run_once_with_progress(runtime, stop)
                if runtime.pipeline.busy_count():
                    # Transfers still running after the grace period: leave without waiting for
                    # them (or closing the ledger under them); the ledger has what resumes them.
                    sys.stderr.flush()
                    os._exit(int(code))
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


def _console(*, stderr: bool = False) -> Console:
    """Rich output that wraps only on a terminal: in the journal, a pipe or a file, a long path
    or message stays on one line (Rich would break it at 80 columns)."""
    from rich.console import Console  # imported when used: ~40 ms of every start otherwise

    console = Console(highlight=False, stderr=stderr, soft_wrap=True)
    if not console.is_terminal:
        console.width = NOT_A_TERMINAL_WIDTH
    return console


def _run_once_with_progress(runtime: Runtime, stop: threading.Event) -> ExitCode:
    from ccwatch.daemon import run_once

    if sys.stderr.isatty():
        code = _with_bar(lambda on_progress: run_once(runtime, on_progress=on_progress, stop=stop))
    else:  # no bar to draw (a service, a pipe, a log file): no Rich either
        code = run_once(runtime, on_progress=lambda done, total: None, stop=stop)
    p = runtime.pipeline
    click.echo(f"{p.delivered} converted, {p.failed} failed", err=True)
    return code


def _with_bar(run: Callable[[Callable[[int, int], None]], ExitCode]) -> ExitCode:
    """``run(on_progress)`` under a progress bar on stderr (a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = _console(stderr=True)
    columns = (TextColumn("converting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task("convert", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=max(total, done) or None)

        return run(on_progress)


_CONFIG_OPTION = click.option(
    "-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
    help="Configuration file (default: $CCWATCH_CONFIG, ./ccwatch.toml, user, /etc).")


def _load_unchecked(config_path: Path | None) -> Config:
    """The config without the folder checks: status and retry must work with a share unmounted."""
    try:
        return config.load(config.find_config_path(config_path), check_folders=False)
    except ConfigError as err:
        _fail(err)


@main.command()
@click.option("--example", is_flag=True,
              help="Write the shipped example (config.example.toml and templates/) into PATH, a "
                   "folder (default: the current one), instead of a starter config.")
@click.argument("path", required=False, type=click.Path(path_type=Path))
def init(example: bool, path: Path | None) -> None:
    """Write a commented starter config (default ./ccwatch.toml); asks only on a terminal."""
    from ccwatch.commands import init as starter

    if example:
        try:
            written = starter.write_example(path or Path("."))
        except ConfigError as err:
            _fail(err)
        for file in written:
            click.echo(f"wrote {file}")
        config_file = next(f for f in written if f.name == "config.example.toml")
        click.echo(f"next: ccwatch run -c {config_file} (offline, on the embedded engine)")
        return
    path = path or Path("ccwatch.toml")
    if path.exists():  # say so before asking anything
        _fail(ConfigError("init", f"{path} already exists; not overwriting it"))
    answers = starter.StarterAnswers()
    if sys.stdin.isatty():
        answers = starter.StarterAnswers(
            input=click.prompt("Folder to watch", default=answers.input),
            output=click.prompt("Folder for converted files", default=answers.output),
            quarantine=click.prompt("Folder for files that fail", default=answers.quarantine),
            endpoint=click.prompt("Endpoint (embedded = offline, no account; live; sandbox; URL)",
                                  default=answers.endpoint))
    try:
        starter.write(path, answers)
    except ConfigError as err:
        _fail(err)
    click.echo(f"wrote {path}; next: ccwatch check -c {path}, then ccwatch run -c {path}")


@main.command()
@_CONFIG_OPTION
def check(config_path: Path | None) -> None:
    """Validate the config, folders, API account and webhook, as the daemon would at start."""
    from ccwatch.commands import check as checks

    cfg = _load_unchecked(config_path)
    report = checks.run_checks(cfg)
    console = _console()
    marks = {checks.OK: "[green]ok  [/]", checks.WARN: "[yellow]warn[/]", checks.FAIL: "[red]FAIL[/]"}
    console.print(f"config {cfg.source}", markup=False)
    for finding in report.findings:
        console.print(f"{marks[finding.level]} {finding.subject}: ", end="")
        console.print(finding.message, markup=False)
    code = report.exit_code
    verdict = {ExitCode.OK: "ready to run", ExitCode.CONFIG: "configuration problems (exit 2)",
               ExitCode.ACCOUNT: "account problems (exit 3)"}[code]
    console.print(verdict)
    sys.exit(int(code))


@main.command()
@_CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the stable JSON form for scripts.")
def status(config_path: Path | None, as_json: bool) -> None:
    """Queued, in-flight, done and failed files per folder, from the ledger (safe while running)."""
    import json

    from ccwatch.commands import status as status_mod

    cfg = _load_unchecked(config_path)
    try:
        report = status_mod.collect(cfg)
    except CcwatchError as err:
        _fail(err)
    if as_json:
        click.echo(json.dumps(status_mod.as_json(report), indent=2, ensure_ascii=False))
    else:
        status_mod.render(report, _console())


@main.command()
@_CONFIG_OPTION
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def explain(config_path: Path | None, paths: tuple[Path, ...]) -> None:
    """For each input file (default: all), the rule, template and output path it would get, or
    why it is ignored. Converts nothing."""
    from ccwatch.commands.explain import explain as verdicts

    cfg = _load_unchecked(config_path)
    count = 0
    for v in verdicts(cfg, paths):
        count += 1
        where = f"{v.folder}: {v.path}" if v.folder else str(v.path)
        if v.rule is not None:
            where += f"\n    rule {v.rule} ({', '.join(v.match)}) → template {v.template}"
        lines = [f"    → {out}" for out in v.outputs] + ([f"    {v.why}"] if v.why else [])
        click.echo("\n".join([where, *lines]))
    if not count:
        click.echo("no files in the watched inputs")


@main.command()
@_CONFIG_OPTION
@click.option("--all", "retry_all", is_flag=True, help="Every quarantined file with an error file.")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def retry(config_path: Path | None, retry_all: bool, paths: tuple[Path, ...]) -> None:
    """Move quarantined files back into their input folder to be converted again.

    PATH is a quarantined file or its .error.json. Exit 2 when any PATH could not be retried
    (the others still are; nothing is ever overwritten or lost).
    """
    from ccwatch.commands.retry import Retrier, quarantined

    if bool(paths) == retry_all:
        raise click.UsageError("give PATH… or --all (not both)")
    cfg = _load_unchecked(config_path)
    try:
        with Retrier(cfg) as retrier:
            outcome = retrier.retry_all(list(quarantined(cfg)) if retry_all else paths)
    except CcwatchError as err:
        _fail(err)
    for done in outcome.retried:  # names escaped like the log's: one line each, printable
        click.echo(logs.escape(f"retrying {done.source} → {done.target}"))
    for problem in outcome.problems:
        click.echo(logs.escape(f"ccwatch: cannot retry {problem}"), err=True)
    if retry_all and not outcome.retried and not outcome.problems:
        click.echo("nothing in quarantine")
    sys.exit(int(ExitCode.CONFIG if outcome.problems else ExitCode.OK))


@main.group()
def service() -> None:
    """Run ccwatch at login: systemd user unit, launchd agent, or Task Scheduler task."""


_USER_OPTION = click.option(
    "--user", "per_user", is_flag=True,
    help="For your own login session (the only kind on macOS and Windows; required on Linux).")


def _service_platform(per_user: bool) -> Platform:
    from ccwatch.commands import service as svc

    try:
        platform = svc.this_platform()
    except ConfigError as err:
        _fail(err)
    if platform == "linux" and not per_user:
        _fail(ConfigError("service", "the system-wide service (a service account, /etc/ccwatch, "
                          "the API key as a credential) is installed by hand: see "
                          "systemd/README.md. For your own desktop session: --user"))
    return platform


@service.command("install")
@_CONFIG_OPTION
@_USER_OPTION
def service_install(config_path: Path | None, per_user: bool) -> None:
    """Write and enable the service that runs `ccwatch run` with this config at login."""
    from ccwatch.commands import service as svc

    platform = _service_platform(per_user)
    cfg = _load_unchecked(config_path)  # refuse a config that cannot even be read
    assert cfg.source is not None  # loaded from a file
    outcome = svc.install(platform, svc.local_spec(platform, cfg.source))
    for line in outcome.lines:
        click.echo(line)


@service.command("uninstall")
@_USER_OPTION
def service_uninstall(per_user: bool) -> None:
    """Stop and disable the service and remove its definition (the config and ledger stay)."""
    from ccwatch.commands import service as svc

    for line in svc.uninstall(_service_platform(per_user)).lines:
        click.echo(line)


@service.command("status")
@_USER_OPTION
def service_status(per_user: bool) -> None:
    """Whether the service is installed and what the service manager says about it."""
    from ccwatch.commands import service as svc

    for line in svc.status(_service_platform(per_user)).lines:
        click.echo(line)
