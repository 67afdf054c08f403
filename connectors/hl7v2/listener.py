"""The MLLP listener: a threaded TCP server, one thread per connection, bounded in every way a
sender could push it: connections (refused above the limit), frame size (discarded to its end and
answered AR), idle time and the time one frame may take to arrive (then the connection closes).

Per frame: header read → keep raw + dedup key in one short transaction → ACK after commit →
mapping enqueued on commit (`services.receive_frame`). The listener never waits on a full parse.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time

from django.db import DatabaseError, connections

from connectors.hl7v2 import constants, services
from formats.hl7v2 import FrameReader, FrameTooLarge, build_ack, frame
from formats.hl7v2.mllp import Garbage
from tenants.models import Connection, Tenant

logger = logging.getLogger(__name__)

MAX_GARBAGE_PER_CONNECTION = 3  # runs of non-MLLP bytes answered before the connection is closed


class _Handler(socketserver.BaseRequestHandler):
    server: MllpServer

    def handle(self) -> None:
        server = self.server
        sock: socket.socket = self.request
        reader = FrameReader(server.max_message_bytes)
        started: float | None = None  # when the current frame's first byte arrived
        garbage = 0
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # an ACK is one small write: send it now
            sock.settimeout(server.idle_timeout)
            while not server.stopping.is_set():
                try:
                    data = sock.recv(65536)
                except (TimeoutError, OSError):
                    break  # idle too long, frame too slow, or the peer went away
                items = list(reader.feed(data)) if data else list(reader.finish())
                for item in items:
                    if isinstance(item, Garbage):
                        garbage += 1
                        if garbage > MAX_GARBAGE_PER_CONNECTION:
                            return
                    sock.sendall(frame(self._answer(item)))
                if not data:
                    break
                if reader.pending:
                    started = started or time.monotonic()
                    left = server.frame_timeout - (time.monotonic() - started)
                    if left <= 0:
                        logger.info("MLLP: closing a connection whose frame took over %ss", server.frame_timeout)
                        break
                    sock.settimeout(min(server.idle_timeout, left))
                else:
                    started = None
                    sock.settimeout(server.idle_timeout)
        except OSError:
            pass  # the peer reset the connection while we answered
        finally:
            connections.close_all()  # this thread's database connections

    def _answer(self, item: bytes | FrameTooLarge | Garbage) -> str:
        server = self.server
        try:
            if isinstance(item, FrameTooLarge):
                return services.reject_unreadable(
                    f"the frame is {item.size} bytes; the limit is {server.max_message_bytes}", item.head,
                    tenant=server.tenant, connection=server.connection, code="102",
                ).ack
            if isinstance(item, Garbage):
                return services.reject_unreadable(
                    "bytes outside an MLLP frame (<VT> message <FS><CR>)", item.data,
                    tenant=server.tenant, connection=server.connection, code="100",
                ).ack
            ack, _ = services.receive_frame(item, tenant=server.tenant, connection=server.connection)
            return ack
        except DatabaseError:
            logger.exception("MLLP: could not keep a message; answered AE so the sender resends")
            connections["default"].close_if_unusable_or_obsolete()
            return build_ack(None, "AE", "the message could not be stored; resend later", error_code="207")
        except Exception:  # the listener must answer and keep serving whatever the input; never retried here
            logger.exception("MLLP: unexpected error answering a frame")
            return build_ack(None, "AE", "internal error; the message was not accepted", error_code="207")


class MllpServer(socketserver.ThreadingTCPServer):
    """`MllpServer(("0.0.0.0", 2575), tenant=…)`; `serve_forever()` in a thread, `stop()` to end."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(
        self, address: tuple[str, int], *, tenant: Tenant, connection: Connection | None = None,
        idle_timeout: float = constants.IDLE_TIMEOUT_SECONDS, frame_timeout: float = constants.FRAME_TIMEOUT_SECONDS,
        max_connections: int = constants.MAX_CONNECTIONS, max_message_bytes: int = constants.MAX_MESSAGE_BYTES,
    ):
        self.tenant = tenant
        self.connection = connection or services.feed_connection(tenant)
        self.idle_timeout, self.frame_timeout = idle_timeout, frame_timeout
        self.max_message_bytes = max_message_bytes
        self.slots = threading.BoundedSemaphore(max_connections)
        self.stopping = threading.Event()
        self._active: set[socket.socket] = set()
        self._active_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            logger.warning("MLLP: connection refused, %s connections already open", len(self._active))
            self.shutdown_request(request)
            return
        with self._active_lock:
            self._active.add(request)
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                self._active.discard(request)
            self.slots.release()

    def stop(self) -> None:
        """Stop accepting, end open connections, close the socket."""
        self.stopping.set()
        self.shutdown()
        with self._active_lock:
            for sock in list(self._active):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.server_close()
