"""A scripted HTTP/1.1 server on a real loopback socket, for the client's own wire: each request
(head and body) is recorded and answered with the bytes the test's script returns for it."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass

ENDED = json.dumps({"data": {"id": "j1", "status": "finished", "tasks": []}}).encode()


@dataclass(frozen=True)
class Seen:
    head: str
    body: bytes

    @property
    def request_line(self) -> str:
        return self.head.split("\r\n", 1)[0]

    def header(self, name: str) -> str | None:
        for line in self.head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


# Given the request's number (from 1) and the request, the bytes to send back; None closes the
# socket without an answer.
Script = Callable[[int, Seen], bytes | None]


class ScriptedServer:
    def __init__(self, answer: Script, *, keep: bool = True,
                 tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.keep = keep
        self.tls = tls
        self.requests: list[Seen] = []
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):  # a client that leaves early ends its connection
            self._exchange(conn)

    def _exchange(self, conn: socket.socket) -> None:
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError:
                conn.close()
                return
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                raw, _, buffer = buffer.partition(b"\r\n\r\n")
                seen = Seen(raw.decode("latin-1"), b"")
                length = int(seen.header("Content-Length") or 0)
                while len(buffer) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                seen = Seen(seen.head, buffer[:length])
                buffer = buffer[length:]
                self.requests.append(seen)
                reply = self.answer(len(self.requests), seen)
                if reply is None:
                    return
                conn.sendall(reply)
                if not self.keep:
                    return

    def close(self) -> None:
        self._sock.close()


def length_answer(body: bytes = ENDED, status: str = "200 OK", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body
