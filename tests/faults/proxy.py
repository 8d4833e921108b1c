"""A loopback TCP proxy in front of DynamoDB Local that misbehaves on demand.

Faults that live below HTTP (a connection reset, a server that never answers, an answer lost
after the write landed) cannot be injected with botocore's ``before-send``: they have to
happen on a real socket, so the client's own timeouts and error handling run. A store pointed
at :attr:`FaultProxy.endpoint` talks to DynamoDB Local through this proxy, which understands
just enough HTTP/1.1 to tell one request from the next on a keep-alive connection::

    with FaultProxy(endpoint) as proxy:
        store = DynamoDBCacheStore(endpoint=proxy.endpoint, ...)
        proxy.set_mode("commit_then_drop", requests=1)   # the next request only
        store.set("k", "v", 60)                          # lands, its answer is lost

Modes, applied per request:

``pass``
    forward the request and relay the answer.
``black_hole``
    read the request and never answer (nor close): the client's read timeout has to end it.
``reset``
    read the request and close the connection with a TCP RST (``SO_LINGER`` 0); nothing is
    forwarded.
``commit_then_drop``
    forward the request, read DynamoDB Local's full answer, then close the client connection
    without sending it: the write landed, the answer was lost.

Threads and sockets only; :meth:`FaultProxy.stop` (or leaving the ``with`` block) closes every
socket and joins every thread.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from types import TracebackType
from typing import Literal, Self
from urllib.parse import urlsplit

__all__ = ["FaultProxy", "Mode"]

Mode = Literal["pass", "black_hole", "reset", "commit_then_drop"]
MODES: tuple[Mode, ...] = ("pass", "black_hole", "reset", "commit_then_drop")

_POLL_S = 0.05
_UPSTREAM_TIMEOUT_S = 30.0
_MAX_HEADER_BYTES = 64 * 1024


class _ConnectionClosedError(Exception):
    """The peer closed the connection (or the proxy is stopping) mid-message."""


class _Reader:
    """Buffered reads of HTTP/1.1 messages from one socket, giving up when ``stopping``."""

    def __init__(self, sock: socket.socket, stopping: threading.Event, timeout_s: float) -> None:
        self._sock = sock
        self._stopping = stopping
        self._timeout_s = timeout_s
        self._buffer = b""

    def _fill(self) -> None:
        waited = 0.0
        while True:
            if self._stopping.is_set():
                raise _ConnectionClosedError("proxy stopping")
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                waited += _POLL_S
                if waited >= self._timeout_s:
                    raise
                continue
            if not chunk:
                raise _ConnectionClosedError("peer closed the connection")
            self._buffer += chunk
            return

    def at_eof(self) -> bool:
        """True when the peer closed the connection before sending anything more."""
        if self._buffer:
            return False
        try:
            self._fill()
        except _ConnectionClosedError:
            return True
        return False

    def until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            if len(self._buffer) > _MAX_HEADER_BYTES:
                raise ValueError("HTTP header block too large")
            self._fill()
        end = self._buffer.index(marker) + len(marker)
        data, self._buffer = self._buffer[:end], self._buffer[end:]
        return data

    def exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def rest(self) -> bytes:
        """Everything until the peer closes the connection."""
        try:
            while True:
                self._fill()
        except _ConnectionClosedError:
            pass
        data, self._buffer = self._buffer, b""
        return data

    def message(self, *, response: bool) -> tuple[bytes, bool]:
        """One whole message, as its raw bytes, and whether the connection ends after it."""
        head = self.until(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        closes = headers.get("connection", "").lower() == "close"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size_line = self.until(b"\r\n")
                body += size_line
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    body += self.until(b"\r\n")  # no trailers from DynamoDB Local
                    return head + body, closes
                body += self.exactly(size + 2)
        if "content-length" in headers:
            return head + self.exactly(int(headers["content-length"])), closes
        status = int(lines[0].split()[1]) if response else 0
        if not response or status in (204, 304) or 100 <= status < 200:
            return head, closes
        return head + self.rest(), True  # delimited by the end of the connection


class FaultProxy:
    """Forwards TCP connections on a loopback port to ``upstream``; see the module docstring.

    ``set_mode(mode)`` applies ``mode`` to every request from now on; ``set_mode(mode,
    requests=n)`` to the next ``n`` requests only, then back to ``pass``. ``seen`` lists the
    mode each request met, in order.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self._upstream = (parts.hostname, parts.port)
        self._lock = threading.Lock()
        self._mode: Mode = "pass"
        self._left: int | None = None
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self.seen: list[Mode] = []

    # -- control -----------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The URL to give a store instead of DynamoDB Local's."""
        if self._listener is None:
            raise RuntimeError("the proxy is not running")
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def set_mode(self, mode: Mode, *, requests: int | None = None) -> None:
        """Apply ``mode`` to every later request, or to the next ``requests`` only."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        if requests is not None and requests < 1:
            raise ValueError("requests must be at least 1")
        with self._lock:
            self._mode, self._left = mode, requests

    def _next_mode(self) -> Mode:
        with self._lock:
            mode = self._mode
            if self._left is not None:
                self._left -= 1
                if self._left == 0:
                    self._mode, self._left = "pass", None
            self.seen.append(mode)
            return mode

    def start(self) -> Self:
        """Listen on a free loopback port and start accepting connections."""
        if self._listener is not None:
            raise RuntimeError("the proxy is already running")
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Close every socket and wait for every thread. Idempotent."""
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        with self._lock:
            sockets = list(self._sockets)
            threads = list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        stuck = [t.name for t in [*threads, self._acceptor] if t is not None and t.is_alive()]
        if stuck:
            raise RuntimeError(f"proxy threads did not stop: {stuck}")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- serving -----------------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._listener is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            while not self._stopping.is_set():
                if not selector.select(timeout=_POLL_S):
                    continue
                try:
                    client, _ = self._listener.accept()
                except BlockingIOError:
                    continue
                with self._lock:
                    thread = threading.Thread(
                        target=self._serve,
                        args=(client,),
                        name=f"fault-proxy-{len(self._threads)}",
                        daemon=True,
                    )
                    self._threads.append(thread)
                    self._sockets.add(client)
                thread.start()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.add(sock)
        return sock

    def _release(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.discard(sock)
        sock.close()

    def _serve(self, client: socket.socket) -> None:
        client.setblocking(True)
        client.settimeout(_POLL_S)
        from_client = _Reader(client, self._stopping, timeout_s=float("inf"))
        upstream: socket.socket | None = None
        from_upstream: _Reader | None = None
        try:
            while not from_client.at_eof():
                request, client_closes = from_client.message(response=False)
                mode = self._next_mode()
                if mode == "black_hole":
                    from_client.rest()  # read whatever comes, answer nothing, until it hangs up
                    return
                if mode == "reset":
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if upstream is None or from_upstream is None:
                    upstream = self._track(socket.create_connection(self._upstream, timeout=5))
                    upstream.settimeout(_POLL_S)
                    from_upstream = _Reader(upstream, self._stopping, _UPSTREAM_TIMEOUT_S)
                upstream.sendall(request)
                response, upstream_closes = from_upstream.message(response=True)
                if mode == "commit_then_drop":
                    return  # the write landed; the answer is never sent
                client.sendall(response)
                if upstream_closes:
                    self._release(upstream)
                    upstream, from_upstream = None, None
                if client_closes:
                    return
        except (_ConnectionClosedError, OSError):
            return
        finally:
            self._release(upstream)
            self._release(client)
