"""HL7 v2 as pure Python (no Django): MLLP framing, a fast reader that honours each message's own
encoding characters, batch splitting, escape decoding and ACK building.

hl7apy's full parse runs at ~60 messages/s here, so neither the listener nor the mapping worker
pays for it: the tests check the ACKs built here with hl7apy's parser, and bench/hl7_mllp.py
uses its parse as the baseline."""

from formats.hl7v2.ack import build_ack, build_batch_ack
from formats.hl7v2.message import (
    Encoding,
    Header,
    Hl7Error,
    Message,
    parse_dtm,
    read_header,
    split_messages,
    unescape,
)
from formats.hl7v2.mllp import FrameReader, FrameTooLarge, frame

__all__ = [
    "Encoding", "FrameReader", "FrameTooLarge", "Header", "Hl7Error", "Message", "build_ack", "build_batch_ack",
    "frame", "parse_dtm", "read_header", "split_messages", "unescape",
]
