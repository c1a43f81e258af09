"""A lean keep-alive HTTP/1.1 connection for the load engine's users (`--client raw`, the default for http://).

Why not only Locust's FastHttpSession: measured here against deploykit's BentoML endpoint on one
connection, a request through FastHttpSession took ~390 µs longer than through this connection (URL
and cookie handling, header objects, Locust's own statistics), and through the bare geventhttpclient
client under it ~240 µs longer. On a 0.6 ms endpoint that is 40-65 % of the latency, and it caps
closed-loop throughput at c=1 far below what the server does (wrk, in C, measured the same
endpoint within a few % of this connection; benchmarks/loadtest_fidelity.py compares them).
This connection sends requests encoded once beforehand and parses answers with httptools (the C
parser uvicorn uses), so the load generator measures the server, not itself. The users, spawning,
distributed master/workers and messaging stay Locust's.

Plain HTTP only: https:// URLs use FastHttpSession (`--client fasthttp`), which speaks TLS.
"""

from __future__ import annotations

import socket
from typing import Optional

import httptools

__all__ = ["RawConnection", "encode_request"]

_RECV_BYTES = 65536


def encode_request(method: str, path: str, host_header: str, headers: dict, body: bytes) -> bytes:
    """One complete HTTP/1.1 request (head + body), ready to send as it is."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host_header}", f"Content-Length: {len(body)}",
             "User-Agent: deploykit-loadtest"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length", "user-agent")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Answer:
    """httptools callbacks: keeps the status, the one header asked for, and whether the answer is complete."""

    __slots__ = ("wanted", "value", "complete", "keep_alive", "parser")

    def __init__(self, wanted: Optional[bytes]):
        self.wanted, self.value, self.complete, self.keep_alive = wanted, None, False, False
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.wanted is not None and name.lower() == self.wanted:
            self.value = value

    def on_headers_complete(self) -> None:
        # llhttp answers this only while the message is being parsed; once complete it says False
        self.keep_alive = self.parser.should_keep_alive()

    def on_message_complete(self) -> None:
        self.complete = True


class RawConnection:
    """One persistent connection to (host, port); reconnects when the server closes it."""

    def __init__(self, host: str, port: int, timeout_s: float, header: Optional[str] = None):
        self.address = (host, port)
        self.timeout_s = timeout_s
        self.header = header.lower().encode("latin-1") if header else None
        self.sock: Optional[socket.socket] = None
        self.used = False  # has this socket already carried a request (a keep-alive that may have gone stale)?

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=self.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one write per request: no Nagle wait
        self.sock, self.used = sock, False
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def request(self, data: bytes) -> tuple[int, Optional[bytes]]:
        """Send one encoded request, read its whole answer → (status, the wanted header's value or None).

        Raises OSError (refused, reset, timeout) or httptools.HttpParserError; the connection is then
        closed. A reused keep-alive connection the server closed before answering a single byte is
        retried once on a fresh one (the time to reconnect stays in the measured latency)."""
        retried = False
        while True:
            sock = self.sock or self._connect()
            reused = self.used
            answer = _Answer(self.header)
            parser = answer.parser
            got_bytes = False
            try:
                sock.sendall(data)
                self.used = True
                while not answer.complete:
                    chunk = sock.recv(_RECV_BYTES)
                    if not chunk:
                        raise ConnectionResetError("the server closed the connection")
                    got_bytes = True
                    parser.feed_data(chunk)
            except (OSError, httptools.HttpParserError):
                self.close()
                if reused and not got_bytes and not retried:
                    retried = True
                    continue
                raise
            answer.parser = None  # break the answer ↔ parser cycle
            if not answer.keep_alive:
                self.close()
            return parser.get_status_code(), answer.value
