"""The API client's own HTTP/1.1 (``ccwatch.client.wire``) against a scripted server on a real loopback
socket: kept connections (and one the server dropped while idle), compressed answers, an
environment proxy with its credentials, and the multipart body the storage host is sent."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import resource
import shutil
import socket
import ssl
import subprocess
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from scripted_server import ScriptedServer, Seen, length_answer

from ccwatch.client.api import MAX_BODY, CloudConvertClient, tls_context
from ccwatch.clock import SystemClock
from ccwatch.errors import TransientError

JOB = json.dumps({"data": {"id": "j1", "status": "waiting", "tasks": []}}).encode()


@pytest.fixture(autouse=True)
def no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def client(url: str) -> CloudConvertClient:
    return CloudConvertClient(url, url + "/sync", "key", timeout_s=5, clock=SystemClock())


@pytest.fixture
def clients() -> Iterator[list[CloudConvertClient]]:
    made: list[CloudConvertClient] = []
    yield made
    for api in made:
        api.close()


def test_requests_share_a_kept_connection(clients: list[CloudConvertClient]) -> None:
    server = ScriptedServer(lambda n, _: length_answer(JOB))
    clients.append(api := client(server.url))
    for _ in range(3):
        assert api.get_job("j1", path="a")["id"] == "j1"
    assert server.connections == 1
    seen = server.requests[0]
    assert seen.request_line == "GET /v2/jobs/j1?include=tasks HTTP/1.1"
    assert seen.header("Authorization") == "Bearer key"


def test_plain_http_never_loads_the_ca_bundle(clients: list[CloudConvertClient]) -> None:
    """The TLS context (~50 ms of CPU to load the CA bundle) is made at the first https
    connection, not at start: a run against an http:// endpoint never pays it."""
    server = ScriptedServer(lambda n, _: length_answer(JOB))
    tls_context.cache_clear()
    clients.append(api := client(server.url))
    api.get_job("j1", path="a")
    assert tls_context.cache_info().currsize == 0


def test_a_kept_connection_is_reused_whatever_its_descriptor_number(
        clients: list[CloudConvertClient]) -> None:
    """With many waits open, sockets get descriptors past 1023, which select() refuses: the
    check that a kept connection is still open must not take that for a closed one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        assert not os.environ.get("CI"), f"the hard descriptor limit ({hard}) is below 1200"
        pytest.skip(f"the hard descriptor limit ({hard}) is below 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        server = ScriptedServer(lambda n, _: length_answer(JOB))
        clients.append(api := client(server.url))
        for _ in range(3):
            api.get_job("j1", path="a")
        assert server.connections == 1
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_connection_the_server_dropped_while_idle_is_not_an_error(
        clients: list[CloudConvertClient]) -> None:
    server = ScriptedServer(lambda n, _: length_answer(JOB, extra="Keep-Alive: timeout=0\r\n"),
                            keep=False)  # answers, then closes without "Connection: close"
    clients.append(api := client(server.url))
    for _ in range(3):
        assert api.get_job("j1", path="a")["id"] == "j1"
    assert server.connections == 3


def test_a_create_on_a_kept_connection_the_server_drops_is_not_sent_twice(
        clients: list[CloudConvertClient]) -> None:
    """A POST may have been acted on before the server dropped the socket: it is not repeated
    (the submit stage finds or re-creates the job by its tag), it is a network error."""
    server = ScriptedServer(lambda n, _: length_answer(JOB) if n == 1 else None)
    clients.append(api := client(server.url))
    api.create_job({"tasks": {}}, path="a")
    with pytest.raises(TransientError) as dropped:
        api.create_job({"tasks": {}}, path="a")
    assert dropped.value.code == "NETWORK"
    assert len(server.requests) == 2 and server.connections == 1


def test_a_gzip_answer_is_read_although_none_was_asked_for(
        clients: list[CloudConvertClient]) -> None:
    server = ScriptedServer(lambda n, _: length_answer(gzip.compress(JOB),
                                                       extra="Content-Encoding: gzip\r\n"))
    clients.append(api := client(server.url))
    assert api.get_job("j1", path="a")["status"] == "waiting"
    assert server.requests[0].header("Accept-Encoding") in (None, "identity")


def test_a_compressed_answer_is_refused_as_it_inflates_not_after(
        clients: list[CloudConvertClient]) -> None:
    """200 MB of JSON whitespace gzipped to a few hundred KB: the client stops at MAX_BODY,
    inflating a piece at a time, and never holds the 200 MB."""
    bomb = gzip.compress(b"{" + b" " * (200 << 20) + b"}", compresslevel=9)
    server = ScriptedServer(lambda n, _: length_answer(bomb, extra="Content-Encoding: gzip\r\n"))
    clients.append(api := client(server.url))
    tracemalloc.start()
    try:
        with pytest.raises(TransientError) as refused:
            api.get_job("j1", path="a")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.code == "RESPONSE_TOO_LARGE"
    assert peak < 3 * MAX_BODY


def test_an_environment_proxy_carries_every_request(monkeypatch: pytest.MonkeyPatch,
                                                    clients: list[CloudConvertClient]) -> None:
    proxy = ScriptedServer(lambda n, _: length_answer(JOB))
    monkeypatch.setenv("HTTP_PROXY", f"http://me:p%40ss@127.0.0.1:{proxy.port}")
    clients.append(api := client("http://api.invalid"))
    assert api.get_job("j1", path="a")["id"] == "j1"
    seen = proxy.requests[0]
    assert seen.request_line == "GET http://api.invalid/v2/jobs/j1?include=tasks HTTP/1.1"
    assert seen.header("Proxy-Authorization") == "Basic bWU6cEBzcw=="  # me:p@ss
    assert seen.header("Host") == "api.invalid"


def test_the_upload_is_one_multipart_body_of_the_length_announced(
        clients: list[CloudConvertClient], tmp_path: Path) -> None:
    server = ScriptedServer(lambda n, _: b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\n<ok/>")
    clients.append(api := client(server.url))
    data = bytes(range(256)) * 5000  # over one 1 MiB piece
    form = {"url": server.url + "/tasks", "parameters": {"key": "a/b", "acl": "private"}}
    name = 'r\u00e9sum\u00e9 "q"\n.pdf'
    (tmp_path / "f").write_bytes(data)
    for _ in range(2):
        with (tmp_path / "f").open("rb") as source:
            source.read(7)  # the upload sends the whole file wherever it was left
            api.upload(form, source, name, job_id="j", task="in")
    assert server.connections == 1  # the answer was read, the socket kept
    seen: Seen = server.requests[0]
    assert int(seen.header("Content-Length") or 0) == len(seen.body)
    assert seen.header("Authorization") is None  # a pre-signed form never sees the key
    boundary = (seen.header("Content-Type") or "").split("boundary=")[1].encode()
    parts = seen.body.split(b"--" + boundary)
    assert parts[0] == b"" and parts[-1] == b"--\r\n"
    assert b'name="key"\r\n\r\na/b\r\n' in parts[1] and b'name="acl"\r\n\r\nprivate\r\n' in parts[2]
    head, _, rest = parts[3].partition(b"\r\n\r\n")
    assert 'filename="r\u00e9sum\u00e9 %22q%22%0A.pdf"'.encode() in head
    assert b"Content-Type: application/pdf" in head
    assert rest == data + b"\r\n"


def test_a_file_that_shrinks_during_its_upload_is_a_network_error(
        clients: list[CloudConvertClient], tmp_path: Path) -> None:
    """The length was announced from the file's size: fewer bytes cannot be sent as that."""
    server = ScriptedServer(lambda n, _: b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    clients.append(api := client(server.url))
    (tmp_path / "f").write_bytes(b"x" * 100)

    class Truncated(io.FileIO):
        def read(self, size: int = -1) -> bytes:
            return b""  # as if another program truncated the file after its size was read

    form = {"url": server.url + "/tasks", "parameters": {}}
    with Truncated(tmp_path / "f") as source, pytest.raises(TransientError) as err:
        api.upload(form, source, "a.png", job_id="j", task="in")
    assert err.value.code == "NETWORK" and "shrank" in err.value.message


def test_https_goes_through_the_proxy_in_a_connect_tunnel(
        monkeypatch: pytest.MonkeyPatch, clients: list[CloudConvertClient], tmp_path: Path) -> None:
    """An HTTPS API behind HTTPS_PROXY: one CONNECT to the proxy (with the credentials the URL
    names), then TLS to the API host itself, its certificate checked against SSL_CERT_FILE."""
    if shutil.which("openssl") is None:
        assert not os.environ.get("CI"), "CI installs openssl (.ci/run)"
        pytest.skip("no openssl to make a certificate with")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=api.test", "-addext", "subjectAltName=DNS:api.test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    api_host = ScriptedServer(lambda n, _: length_answer(JOB), tls=server_tls)
    tunnels: list[str] = []
    proxy = socket.create_server(("127.0.0.1", 0))

    def tunnel() -> None:  # a CONNECT proxy that sends every tunnel to the scripted API host
        while True:
            try:
                client_side, _ = proxy.accept()
            except OSError:
                return
            head = b""
            while b"\r\n\r\n" not in head:
                head += client_side.recv(4096)
            tunnels.append(head.decode("latin-1"))
            upstream = socket.create_connection(("127.0.0.1", api_host.port))
            client_side.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            for a, b in ((client_side, upstream), (upstream, client_side)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=tunnel, daemon=True).start()
    monkeypatch.setenv("HTTPS_PROXY", f"http://me:pw@127.0.0.1:{proxy.getsockname()[1]}")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    tls_context.cache_clear()  # the process's one context, made again with the test's CA
    try:
        clients.append(api := client("https://api.test"))
        for _ in range(2):
            assert api.get_job("j1", path="a")["id"] == "j1"
    finally:
        tls_context.cache_clear()
        proxy.close()
    assert len(tunnels) == 1  # the tunnel was kept for the second request
    assert tunnels[0].startswith("CONNECT api.test:443 HTTP/1.")
    assert "Proxy-Authorization: Basic bWU6cHc=" in tunnels[0]  # me:pw
    assert api_host.requests[0].request_line == "GET /v2/jobs/j1?include=tasks HTTP/1.1"
    assert api_host.requests[0].header("Authorization") == "Bearer key"


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def test_a_url_with_spaces_or_non_ascii_is_sent_percent_encoded(
        clients: list[CloudConvertClient], tmp_path: Path) -> None:
    """An export URL as a storage host might hand it out (a file name with a space, an accent
    or a control character in it, or already escaped): the request line carries it escaped."""
    server = ScriptedServer(lambda n, _: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    clients.append(api := client(server.url))
    url = server.url + "/tasks/r\u00e9sum\u00e9 final\x01%20v2.pdf?sig=a b&x=%2F"
    with api.download(url, job_id="j", path="a") as chunks:
        assert b"".join(chunks) == b"ok"
    assert server.requests[0].request_line == (
        "GET /tasks/r%C3%A9sum%C3%A9%20final%01%20v2.pdf?sig=a%20b&x=%2F HTTP/1.1")


def _chunked(body: bytes, size: int = 7) -> bytes:
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\nX-Trailer: t\r\n\r\n"


@pytest.mark.parametrize(("name", "answer", "kept"), [
    ("chunked, with an extension and a trailer",
     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + _chunked(JOB), True),
    ("an interim 100 Continue before the answer",
     b"HTTP/1.1 100 Continue\r\n\r\n" + length_answer(JOB), True),
    ("header names in any case, a repeated one",
     b"HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh: %d\r\nVia: a\r\nVia: b\r\n\r\n%s" % (len(JOB), JOB),
     True),
    ("delimited by the end of the connection",
     b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + JOB, False),
    ("HTTP/1.0 without keep-alive", b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s"
     % (len(JOB), JOB), False),
])
def test_every_way_an_answer_can_be_framed_is_read_whole(
        clients: list[CloudConvertClient], name: str, answer: bytes, kept: bool) -> None:
    """Each framing HTTP/1.1 allows is read to its end, and the socket is kept exactly when the
    server can take another request on it."""
    server = ScriptedServer(lambda n, _: answer, keep=kept)
    clients.append(api := client(server.url))
    for _ in range(2):
        assert api.get_job("j1", path="a")["id"] == "j1", name
    assert server.connections == (1 if kept else 2), name


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + JOB,  # fewer bytes than announced
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # a chunk size that is not
    b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n",
    b"SSH-2.0-OpenSSH_9.6\r\n\r\n",  # not HTTP at all
    b"HTTP/1.1 200 OK\r\n" + b"X-Long: " + b"a" * (70 << 10) + b"\r\n\r\n",
])
def test_a_broken_answer_is_a_network_error(clients: list[CloudConvertClient],
                                            answer: bytes) -> None:
    server = ScriptedServer(lambda n, _: answer, keep=False)
    clients.append(api := client(server.url))
    with pytest.raises(TransientError) as broken:
        api.get_job("j1", path="a")
    assert broken.value.code == "NETWORK"


def test_a_204_with_no_length_keeps_the_connection(clients: list[CloudConvertClient]) -> None:
    """A delete's 204 has no body whatever its headers say; the socket carries the next request."""
    server = ScriptedServer(lambda n, _: b"HTTP/1.1 204 No Content\r\n\r\n" if n % 2
                            else length_answer(JOB))
    clients.append(api := client(server.url))
    api.delete_job("j1", path="a")
    assert api.get_job("j1", path="a")["id"] == "j1"
    assert server.connections == 1


def test_a_line_break_never_reaches_a_request_head(clients: list[CloudConvertClient]) -> None:
    """A job id from a server or a file name cannot add a header or a second request."""
    server = ScriptedServer(lambda n, _: length_answer(JOB))
    clients.append(api := client(server.url))
    api.get_job("j1\r\nX-Injected: 1", path="a")
    api.get_job("j1\nGET /evil HTTP/1.1", path="a")
    assert len(server.requests) == 2
    assert all(seen.header("X-Injected") is None for seen in server.requests)
    assert all("\n" not in seen.request_line and seen.request_line.count(" ") == 2
               for seen in server.requests)
