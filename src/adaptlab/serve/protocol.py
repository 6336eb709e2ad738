"""Connections of ``adaptlab serve``: time limits on sending a request, a connection cap,
JSON for the errors said below the app, and the process's open-file limit.

uvicorn (up to 0.55 at least) has no header or body read timeout: its only timer is
the keep-alive one, armed after a response, so a client that opens a connection and
sends half a request line holds it forever (uvicorn issue #157 lists
``--timeout-request-start`` as not done). A few hundred such connections use up the
process's file descriptors, and then no one is served. :func:`guarded_protocol` is
uvicorn's own h11 protocol with two timers: the request head (request line and
headers) must arrive within ``header_timeout_s`` of the connection (or of the first
byte after a keep-alive pause), the body within ``body_timeout_s`` of its head; a
connection that misses either gets 408 and is closed. Past ``max_connections`` open
connections a new one is answered 503 (its request is read, under the same timers,
never run). The header size is bounded by h11 (16 KiB), the body size by the app.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

log = logging.getLogger("adaptlab.serve")
#: File descriptors kept for what is not a client connection: the store, model files,
#: the listening socket, log files, the HTTP clients of a hosted model.
FD_RESERVE = 100


def error_bytes(status: int, reason: str, message: str, code: str, **headers: str) -> bytes:
    """A whole HTTP/1.1 response with an OpenAI-shaped error, closing the connection."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    error = {"message": message, "type": kind, "param": None, "code": code}
    body = json.dumps({"error": error}).encode()
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def guarded_protocol(
    *, header_timeout_s: float, body_timeout_s: float, max_connections: int
) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with the timers and the cap above (pass it as ``http=``)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    busy_message = (
        f"the server has {max_connections:,} open connections, its limit "
        "(adaptlab serve --max-connections); try again shortly"
    )

    async def too_busy(scope: Any, receive: Any, send: Any) -> None:
        body = json.dumps(
            {
                "error": {
                    "message": busy_message,
                    "type": "server_error",
                    "param": None,
                    "code": "too_many_connections",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", b"1"),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    class Guarded(H11Protocol):
        closed_slow = 0  # connections closed by a timer, summed between log lines
        flush_due = False

        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self._timer: asyncio.TimerHandle | None = None
            self._waiting: str | None = None  # "head" or "body": what the timer is for
            self._idle = False  # the head timer was armed before any byte of the head

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            if len(self.connections) > max_connections:
                self.app = too_busy  # this connection's request is read and refused
            self._follow(idle=True)

        def data_received(self, data: bytes) -> None:
            if self._waiting == "head" and self._idle:
                self._disarm()  # the head starts now: its time counts from here
            super().data_received(data)
            self._follow()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._follow(idle=True)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            self._disarm()
            if not self.transport.is_closing():
                message = (
                    "not a valid HTTP/1.1 request: a malformed request line, header or "
                    "Content-Length, or a request head over 16 KiB"
                )
                self.transport.write(error_bytes(400, "Bad Request", message, "bad_http"))
                self.transport.close()

        def _follow(self, idle: bool = False) -> None:
            """Arm the timer for what the connection waits for now, or stop it."""
            if self.transport is None or self.transport.is_closing():
                self._disarm()
                return
            state = self.conn.their_state
            if state is h11.IDLE:
                wanted: str | None = "head"
            elif state is h11.SEND_BODY:
                wanted = "body"
            else:  # the request is in; the answer may take as long as the model needs
                wanted = None
            if wanted == self._waiting:
                return
            self._disarm()
            if wanted is not None:
                delay = header_timeout_s if wanted == "head" else body_timeout_s
                self._timer = self.loop.call_later(delay, self._expire, wanted)
                self._waiting, self._idle = wanted, idle and wanted == "head"

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._waiting, self._idle = None, None, False

        def _expire(self, what: str) -> None:
            self._timer, self._waiting = None, None
            if self.transport.is_closing():
                return
            unanswered = self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE)
            if unanswered and not (self._idle and what == "head"):
                limit = header_timeout_s if what == "head" else body_timeout_s
                part = "request line and headers" if what == "head" else "request body"
                message = (
                    f"the {part} did not arrive within {limit:g} s "
                    f"(adaptlab serve --{what.replace('head', 'header')}-timeout-s)"
                )
                self.transport.write(
                    error_bytes(408, "Request Timeout", message, "request_timeout")
                )
            self.transport.close()
            cls = type(self)
            cls.closed_slow += 1
            if not cls.flush_due:  # one log line a second at most, however many close
                cls.flush_due = True
                self.loop.call_later(1.0, cls.flush)

        @classmethod
        def flush(cls) -> None:
            log.warning(
                "closed %d connection(s) that sent no complete request in time "
                "(head %g s, body %g s)",
                cls.closed_slow,
                header_timeout_s,
                body_timeout_s,
            )
            cls.closed_slow, cls.flush_due = 0, False

    return Guarded


def raise_open_files_limit() -> int | None:
    """Raise this process's soft limit on open files to its hard limit where allowed;
    the soft limit now in force (None where the platform has no such limit)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return None if soft == resource.RLIM_INFINITY else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target
