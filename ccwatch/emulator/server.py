"""Serving the emulator with waitress: ``serve`` (a context manager) and ``run_forever`` (the CLI)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

from ccwatch.emulator.core import Emulator

# Sync waits hold a thread each; uploads of any size are buffered to disk by waitress first.
THREADS = 48
MAX_BODY = 1 << 40


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0", "localhost"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class _Loop:
    """waitress's own loop, one poll at a time, so that ``stop`` ends it cleanly.

    The lock orders "stop and wake the loop" before "close every socket": waking a closed
    trigger would write into a file descriptor number some other file may own by then.
    """

    def __init__(self, server: Any) -> None:
        self.server = server
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self.run, name="emulator-http", daemon=True)

    def run(self) -> None:
        try:
            while not self.stopping:
                wasyncore.loop(timeout=1.0, map=self.server._map, use_poll=True, count=1)
        finally:
            with self.lock:
                self.stopping = True
                for channel in list(self.server._map.values()):
                    try:
                        channel.close()
                    except OSError:
                        pass
            self.server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)

    def stop(self) -> None:
        with self.lock:
            if not self.stopping:
                self.stopping = True
                self.server.pull_trigger()
        self.thread.join(timeout=10)


@contextlib.contextmanager
def serve(emu: Emulator | None = None, host: str = "127.0.0.1", port: int = 0,
          *, threads: int = THREADS, **emulator_kwargs: Any) -> Iterator[str]:
    """Serve ``emu`` (or a new ``Emulator(**emulator_kwargs)``, closed on exit); yields its base URL."""
    own = emu is None
    emulator = Emulator(**emulator_kwargs) if emu is None else emu
    bind = "127.0.0.1" if host == "localhost" else host  # one socket, one port
    server: Any = create_server(
        emulator.app, host=bind, port=port, threads=threads, connection_limit=2000, backlog=1024,
        max_request_body_size=MAX_BODY, channel_timeout=300, ident="ccwatch-emulator",
        asyncore_use_poll=True, recv_bytes=1 << 18)
    base = f"http://{_url_host(bind)}:{server.effective_port}"
    emulator.base_url = base
    loop = _Loop(server)
    loop.thread.start()
    try:
        yield base
    finally:
        with emulator.store.changed:  # release sync waits so their threads can finish
            emulator.store.closing = True
            emulator.store.changed.notify_all()
        loop.stop()
        with emulator.store.changed:
            emulator.store.closing = False
        if own:
            emulator.close()


def run_forever(host: str = "127.0.0.1", port: int = 8400, api_key: str = "emulator-key",
                webhook_secret: str = "emulator-secret", latency_s: float = 0.0,
                storage: Path | str | None = None) -> None:
    """Serve until SIGINT/SIGTERM; prints ``ccwatch emulator listening on URL`` once ready."""
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    with Emulator(api_key=api_key, webhook_secret=webhook_secret, latency_s=latency_s,
                  storage=storage) as emu, serve(emu, host=host, port=port) as base:
        print(f"ccwatch emulator listening on {base}", flush=True)
        stop.wait()
