"""Serving the emulator: ``wsgi_app`` builds its WSGI app, ``serve`` (a context manager) runs it on
waitress, ``run_forever`` is the CLI's loop."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ccwatch.emulator.app import EmulatorApp
from ccwatch.emulator.core import Emulator
from ccwatch.emulator.storage import StorageApp
from ccwatch.wsgiserve import serve_in_thread

# Sync waits hold a thread each; uploads of any size are buffered to disk by waitress first.
THREADS = 48
MAX_BODY = 1 << 40
OUTBUF = 16 << 20


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0", "localhost"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def wsgi_app(emu: Emulator) -> EmulatorApp:
    """The emulator's HTTP API as a WSGI app (e.g. for ``httpx.WSGITransport``: no socket)."""
    return EmulatorApp(emu)


def storage_wsgi_app(emu: Emulator) -> StorageApp:
    """The emulator's storage host (upload forms, downloads) as a WSGI app."""
    return StorageApp(emu)


@contextlib.contextmanager
def serve(emu: Emulator | None = None, host: str = "127.0.0.1", port: int = 0,
          *, threads: int = THREADS, **emulator_kwargs: Any) -> Iterator[str]:
    """Serve ``emu`` (or a new ``Emulator(**emulator_kwargs)``, closed on exit); yields its base URL.

    The storage host gets a second, free port on the same address (``emu.storage_url``).
    """
    own = emu is None
    emulator = Emulator(**emulator_kwargs) if emu is None else emu
    bind = "127.0.0.1" if host == "localhost" else host  # one socket, one port
    options: dict[str, Any] = dict(
        threads=threads, connection_limit=2000, backlog=1024, max_request_body_size=MAX_BODY,
        channel_timeout=300, ident="ccwatch-emulator", recv_bytes=1 << 18,
        # An answer the client reads slowly waits in memory up to the high watermark (which
        # pauses the app); never spilled to a temp file, which waitress leaves to the garbage
        # collector when the client hangs up mid-answer (a ResourceWarning in a later test).
        outbuf_high_watermark=OUTBUF, outbuf_overflow=OUTBUF + (1 << 20))
    with contextlib.ExitStack() as stack:
        if own:
            stack.callback(emulator.close)
        stack.callback(setattr, emulator.store, "closing", False)  # servable again after the stop
        # Uploads and downloads go to their own host, as storage.cloudconvert.com is apart from
        # the API: a client that sends its API key there, or assumes one host, fails here too.
        storage_port = stack.enter_context(serve_in_thread(
            storage_wsgi_app(emulator), host=bind, port=0, name="emulator-storage", **options))
        emulator.storage_url = f"http://{_url_host(bind)}:{storage_port}"
        emulator.store.max_waits = threads // 2  # the other half serves everything else
        bound = stack.enter_context(serve_in_thread(
            wsgi_app(emulator), host=bind, port=port, name="emulator-http", **options))
        stack.callback(_release_sync_waits, emulator)
        base = f"http://{_url_host(bind)}:{bound}"
        emulator.base_url = base
        yield base


def _release_sync_waits(emulator: Emulator) -> None:
    """Wake blocked sync waits before the server stops, so their threads can finish."""
    emulator.store.release_waits()


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
        print(f"ccwatch emulator storage host on {emu.storage_url}", flush=True)
        stop.wait()
