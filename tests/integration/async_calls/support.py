"""A real model server for the async tests: a stdlib HTTP server on 127.0.0.1, and an asyncio client for it.

The server answers `GET /echo?x=X` with body `X` after `delay` seconds, and
`GET /tokens?x=X&n=N` with N lines `X:0` .. `X:N-1`, each written and
flushed on its own, `token_delay` apart. Per value of `x` a test can make
the first requests fail (HTTP 500), stall (no answer until `release()`), or
fail for good (HTTP 404, or 500 forever). It records every request's
arrival, so tests count attempts exactly.

The client speaks HTTP/1.0 over `asyncio.open_connection`: one connection
per call, so many calls are in flight at once without any HTTP library.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STALL_LIMIT = 60.0
"""Seconds a stalled request waits for `release()` at most (the server never outlives a broken test long)."""


class ServerError(ConnectionError):
    """HTTP 5xx: worth retrying (a ConnectionError, so the default `retry_on` retries it)."""


class NotFound(ValueError):
    """HTTP 404: retrying will not help."""


class ModelServer:
    """The server; use as a context manager (`port` once entered)."""

    def __init__(self, delay: float = 0.0, token_delay: float = 0.0) -> None:
        self.delay = delay
        self.token_delay = token_delay
        self.fail_first: dict[str, int] = {}
        """x -> how many of its first requests answer 500."""
        self.stall_first: dict[str, int] = {}
        """x -> how many of its first requests get no answer until `release()`."""
        self.stall_tokens_after: dict[str, int] = {}
        """x -> after how many tokens its stream pauses until `release()`."""
        self.missing: set[str] = set()
        """Values of x answered with 404."""
        self.hits: collections.Counter[str] = collections.Counter()
        self.arrivals: list[float] = []
        self.in_progress = 0
        self._changed = threading.Condition()
        self._released = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self.port = self._server.server_address[1]

    def __enter__(self) -> ModelServer:
        threading.Thread(target=self._server.serve_forever, daemon=True, name="model-server").start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def release(self) -> None:
        """Let every stalled request (and paused stream) go on."""
        self._released.set()

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> bool:
        """Block until `predicate(server)` holds (checked at each request's start and end); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    # ------------------------------------------------------------------ the handler's side
    def _arrive(self, x: str) -> int:
        with self._changed:
            self.hits[x] += 1
            self.arrivals.append(time.monotonic())
            self.in_progress += 1
            self._changed.notify_all()
            return self.hits[x]

    def _leave(self) -> None:
        with self._changed:
            self.in_progress -= 1
            self._changed.notify_all()

    def _stall(self) -> None:
        self._released.wait(STALL_LIMIT)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # a burst of connections must not overflow the accept queue (1 s SYN retries)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that gave up (a timeout, a cancelled call) closed its end: nothing to report
        super().handle_error(request, client_address)


def _handler(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            x = query.get("x", "")
            attempt = server._arrive(x)
            try:
                if attempt <= server.stall_first.get(x, 0):
                    server._stall()
                if x in server.missing:
                    self._send(404, b"no such thing")
                elif attempt <= server.fail_first.get(x, 0):
                    self._send(500, b"try again")
                elif url.path == "/tokens":
                    self._tokens(x, int(query.get("n", "3")))
                else:
                    time.sleep(server.delay)  # the model's work
                    self._send(200, x.encode())
            finally:
                server._leave()

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _tokens(self, x: str, n: int) -> None:
            self.send_response(200)
            self.end_headers()
            for i in range(n):
                if i == server.stall_tokens_after.get(x):
                    server._stall()
                time.sleep(server.token_delay)  # the model generating the next token
                self.wfile.write(f"{x}:{i}\n".encode())
                self.wfile.flush()

    Handler.protocol_version = "HTTP/1.0"
    return Handler


async def _request(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    while (await reader.readline()) not in (b"\r\n", b""):  # headers
        pass
    if status >= 500:
        raise ServerError(f"HTTP {status} for {path}")
    if status == 404:
        raise NotFound(f"HTTP 404 for {path}")
    return reader, writer, status


async def http_get(port: int, path: str) -> str:
    """The body of `GET path`; raises `ServerError` for 5xx and `NotFound` for 404."""
    reader, writer, _ = await _request(port, path)
    try:
        return (await reader.read()).decode()
    finally:
        writer.close()


async def http_lines(port: int, path: str) -> AsyncIterator[str]:
    """The lines of `GET path`'s body, each as soon as it arrives."""
    reader, writer, _ = await _request(port, path)
    try:
        while line := await reader.readline():
            yield line.decode().rstrip("\n")
    finally:
        writer.close()
