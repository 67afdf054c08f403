"""MLLP framing: <VT> message <FS><CR>. The reader is incremental (feed it what the socket gives)
and bounded: a frame larger than `max_size` is discarded up to its end and reported, so one bad
sender cannot make the listener hold unbounded memory, and the stream stays in step."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

START = b"\x0b"
END = b"\x1c\x0d"
_END_BYTE = b"\x1c"

DEFAULT_MAX_SIZE = 1024 * 1024  # bytes of one frame's content


def frame(message: bytes | str, encoding: str = "utf-8") -> bytes:
    """Wrap one message (or batch) in an MLLP frame."""
    data = message.encode(encoding) if isinstance(message, str) else message
    return START + data + END


@dataclass(frozen=True)
class FrameTooLarge:
    """Stands in the reader's output for a frame that exceeded the limit (its content dropped)."""

    size: int
    head: bytes  # the first bytes, kept so the rejection can name the message


@dataclass(frozen=True)
class Garbage:
    """Bytes outside any frame (before a <VT>): reported once per run of them, then skipped."""

    data: bytes


class FrameReader:
    """Feed bytes, get complete frames (bytes), `FrameTooLarge` or `Garbage` items back.

    A frame ends at <FS> followed by <CR>; a bare <FS> at the end of the buffer waits for the next
    bytes (some senders omit the <CR>: `finish()` accepts such a last frame). `pending` says whether
    a frame has started and not finished (the listener's slow-sender deadline runs only then).
    """

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE):
        self.max_size = max_size
        self._buffer = bytearray()
        self._in_frame = False
        self._discarding = 0  # bytes of an oversize frame dropped so far (0: not discarding)
        self._head = b""

    @property
    def pending(self) -> bool:
        return self._in_frame or bool(self._buffer)

    def feed(self, data: bytes) -> Iterator[bytes | FrameTooLarge | Garbage]:
        self._buffer += data
        while self._buffer:
            if not self._in_frame:
                start = self._buffer.find(START)
                if start < 0:
                    junk = bytes(self._buffer.strip(b"\r\n\x1c \t"))
                    self._buffer.clear()
                    if junk:
                        yield Garbage(junk[:200])
                    return
                junk = bytes(self._buffer[:start]).strip(b"\r\n\x1c \t")
                del self._buffer[: start + 1]
                self._in_frame = True
                if junk:
                    yield Garbage(junk[:200])
                continue
            end = self._buffer.find(_END_BYTE)
            if end < 0:
                if len(self._buffer) > self.max_size or self._discarding:
                    self._discard(len(self._buffer))
                return
            if end + 1 >= len(self._buffer):  # <FS> is the last byte: wait for the <CR>
                if end > self.max_size or self._discarding:
                    self._discard(end)
                    # keep the <FS>
                return
            content = bytes(self._buffer[:end])
            cut = end + 2 if self._buffer[end + 1 : end + 2] == b"\r" else end + 1
            del self._buffer[:cut]
            self._in_frame = False
            if self._discarding or len(content) > self.max_size:
                size = self._discarding + len(content)
                head = self._head or content[:200]
                self._discarding, self._head = 0, b""
                yield FrameTooLarge(size, head)
            else:
                yield content

    def _discard(self, count: int) -> None:
        if not self._discarding:
            self._head = bytes(self._buffer[:200])
        self._discarding += count
        del self._buffer[:count]

    def finish(self) -> Iterator[bytes | FrameTooLarge | Garbage]:
        """At end of stream: a last frame missing only its <CR> is complete; anything else is a half frame."""
        if self._in_frame and self._buffer.endswith(_END_BYTE) and not self._discarding:
            content = bytes(self._buffer[:-1])
            self._buffer.clear()
            self._in_frame = False
            yield content if len(content) <= self.max_size else FrameTooLarge(len(content), content[:200])
        elif self._in_frame or self._buffer:
            yield Garbage(bytes(self._buffer[:200]) or b"(half frame)")
            self._buffer.clear()
            self._in_frame = False
            self._discarding = 0


def read_frames(data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> list[bytes | FrameTooLarge | Garbage]:
    """All frames of a complete byte string (a file of MLLP-framed messages)."""
    reader = FrameReader(max_size)
    return [*reader.feed(data), *reader.finish()]
