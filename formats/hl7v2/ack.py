"""ACK messages, written with the encoding characters of the message they answer.

Built by hand: hl7apy builds a valid ACK too but costs ~1 ms (its model load and validation) per
message on the listener's hot path; the tests check these ACKs with hl7apy's parser instead.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime

from formats.hl7v2.message import DEFAULT_ENCODING, Encoding, Header

RECEIVING_APPLICATION = "SWITCHBOARD"
RECEIVING_FACILITY = "HUB"

# Ack control ids: a process prefix and a counter, so two listeners never hand out the same one.
_counter = itertools.count(1)
_prefix = f"SB{os.getpid() % 100000:05d}"

# HL7 table 0357 texts for the codes we send.
ERROR_TEXT = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "203": "Unsupported version id",
    "207": "Application internal error",
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")


def build_ack(
    header: Header | None, code: str = "AA", text: str = "", error_code: str = "", error_where: str = "",
    encoding: Encoding | None = None, control_id: str = "",
) -> str:
    """An ACK (MSH, MSA, and ERR when there is an error) for `header`, or for a message whose header
    could not be read (`header` None: default or given encoding characters, the control id if known).
    `code` is AA, AE or AR; `text` goes to MSA-3 and ERR-8 escaped with the message's characters."""
    enc = header.encoding if header is not None else (encoding or DEFAULT_ENCODING)
    f, c = enc.field, enc.component
    esc = enc.escape_text
    if header is not None:
        msh = [
            "MSH", enc.msh2, RECEIVING_APPLICATION, RECEIVING_FACILITY, esc(header.sending_application), esc(header.sending_facility),
            _now(), "", f"ACK{c}{header.trigger}{c}ACK" if header.trigger else "ACK", f"{_prefix}{next(_counter)}",
            esc(header.processing_id) or "P", esc(header.version),
        ]
        control_id = header.control_id
    else:
        msh = ["MSH", enc.msh2, RECEIVING_APPLICATION, RECEIVING_FACILITY, "", "", _now(), "", "ACK", f"{_prefix}{next(_counter)}", "P", "2.5.1"]
    segments = [f.join(msh), f.join(["MSA", code, esc(control_id), esc(text[:80])] if text else ["MSA", code, esc(control_id)])]
    if code != "AA":
        error_code = error_code or "207"
        location = esc(error_where).replace("-", c) if error_where else ""  # ERR-2 ERL: segment^sequence^field
        segments.append(f.join([
            "ERR", "", location, f"{error_code}{c}{esc(ERROR_TEXT.get(error_code, 'Error'))}{c}HL70357",
            "E", "", "", "", esc(text[:250]),
        ]))
    return "\r".join(segments) + "\r"


def build_batch_ack(acks: list[str], encoding: Encoding | None = None) -> str:
    """The answer to a batch: BHS, one ACK per message, BTS with the count."""
    enc = encoding or DEFAULT_ENCODING
    f = enc.field
    bhs = f.join(["BHS", enc.msh2, RECEIVING_APPLICATION, RECEIVING_FACILITY, "", "", _now()])
    return bhs + "\r" + "".join(acks) + f.join(["BTS", str(len(acks))]) + "\r"
