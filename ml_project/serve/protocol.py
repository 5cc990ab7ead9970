"""uvicorn's httptools protocol with the limits on a request's head that uvicorn lacks.

uvicorn bounds the wait between requests (`timeout_keep_alive`) and the connections it takes (`limit_concurrency`), but
not the time a request's line and headers may take, nor their size: a client that trickles header bytes, or connects
and sends nothing, holds its connection for good (slowloris), and a 20 MB header is read whole and answered. This
protocol adds three limits and answers them as HTTP says: 408 when the head is not in within `head_timeout_s` (a
connection that sent nothing is closed without a word), 431 when it is larger than `max_header_kb` or has more than
`max_headers` lines. Each is counted in Prometheus (`mlp_requests_total{endpoint="other"}`), as the app counts its own.
Beyond uvicorn's `limit_concurrency` it answers a 503 that says so, with `Retry-After`, counted as
`mlp_errors_total{kind="over_capacity"}` (uvicorn's own says only "Service Unavailable").

The body's deadline is the app's (`Observed` in `ml_project.serve.app`), where the request can be logged.
Tests: tests/test_hostile.py."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .log import metrics

log = logging.getLogger(__name__)

__all__ = ["HeadLimits", "configure_head_limits", "GuardedHttpToolsProtocol"]


@dataclass(frozen=True)
class HeadLimits:
    "What a request's head (its line and headers) may take."

    head_timeout_s: float = 10.0  # from the request's first byte (or from connecting) to its last header line
    max_header_kb: int = 32  # the request line and headers together
    max_headers: int = 100  # header lines


_limits = HeadLimits()


def configure_head_limits(
    limits: HeadLimits,  # the limits every connection of this process gets from now on
):
    "Set the limits of this process's connections (the app factory calls it in each worker, from the settings)."
    global _limits
    _limits = limits


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    "`HttpToolsProtocol` with a deadline and size caps on each request's head; `uvicorn.run(http=...)` takes it."

    def connection_made(self, transport):
        super().connection_made(transport)
        self._limits, self._refused, self._head_bytes, self._head_timer = _limits, False, 0, None
        self._in_head = False
        self._arm_head_timer()  # a client that connects and sends nothing is let go too

    def _arm_head_timer(self):
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self._limits.head_timeout_s, self._head_timed_out)

    def _head_timed_out(self):
        self._head_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return  # a request is being answered: its body's deadline is the app's
        if self._in_head:
            self._refuse(408, f"the request's headers did not arrive within {self._limits.head_timeout_s:g} s")
        else:
            self.transport.close()  # idle since connecting or since its last answer: nothing to say

    def _refuse(self, status: int, message: str, extra: bytes = b""):
        "Answer `status` with `message`, close the connection and count it; the parser is fed nothing more."
        self._refused = True
        if self.transport.is_closing():
            return
        body = ('{"detail": "' + message + '"}').encode()
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    b"content-type: application/json\r\n",
                    b"content-length: " + str(len(body)).encode() + b"\r\n",
                    extra,
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self.transport.close()
        m = metrics()
        if status == 503:  # never admitted, and not the client's error: counted for capacity alerts, not as a 5xx
            m["errors"].labels("over_capacity").inc()
        else:
            m["requests"].labels("other", str(status)).inc()
            m["errors"].labels(str(status)).inc()
        log.warning("refused a request from %s: %s (%s)", self.client[0] if self.client else "?", status, message)

    def data_received(self, data: bytes):
        if self._refused:
            return
        super().data_received(data)
        if self._in_head and not self._refused:  # still in the head after this chunk: all of it was head
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.max_header_kb << 10:
                self._refuse(431, f"the request's line and headers are larger than {self._limits.max_header_kb} KB")

    def on_message_begin(self):
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0
        self._arm_head_timer()  # the deadline runs from the request's first byte

    def on_header(self, name: bytes, value: bytes):
        if self._refused:
            return
        super().on_header(name, value)
        if len(self.headers) > self._limits.max_headers:
            self._refuse(431, f"the request has more than {self._limits.max_headers} header lines")

    def on_headers_complete(self):
        if self._refused:
            return
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        cap = self.limit_concurrency
        if cap is not None and (len(self.connections) >= cap or len(self.tasks) >= cap):  # uvicorn's test, said plainly
            limit = f"the service is at its limit of {cap} connections at once; retry shortly, or another replica"
            self._refuse(503, limit, b"retry-after: 1\r\n")
            return
        super().on_headers_complete()

    def on_body(self, body: bytes):
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self):
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self):
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()  # keep-alive closes an idle connection first; this bounds the next request's head

    def connection_lost(self, exc):
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)
