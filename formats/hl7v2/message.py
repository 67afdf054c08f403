"""Reading HL7 v2 messages fast: segments split on the message's own separators, fields by index.

Each message names its encoding characters in MSH-1 (field separator) and MSH-2 (component,
repetition, escape, subcomponent), and a batch may mix messages with different ones: everything
here takes them from the message itself. Values come back with escapes decoded (`unescape`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo

SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n")
_BATCH_SEGMENTS = ("FHS", "BHS", "BTS", "FTS")


class Hl7Error(ValueError):
    """A message that cannot be read or accepted. `where` names the place (e.g. "MSH-10"), `code`
    is the HL7 table 0357 error code the ACK carries, `reject` says AR (cannot be read or is not
    supported) rather than AE."""

    def __init__(self, reason: str, where: str = "", code: str = "207", reject: bool = True):
        self.reason, self.where, self.code, self.reject = reason, where, code, reject
        super().__init__(f"{where}: {reason}" if where else reason)


@dataclass(frozen=True)
class Encoding:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def msh2(self) -> str:
        return f"{self.component}{self.repetition}{self.escape}{self.subcomponent}"

    def escape_text(self, text: str) -> str:
        """Escape the separators in free text (an ACK's reason) with this message's characters."""
        e = self.escape
        out = text.replace(e, f"{e}E{e}")
        for char, code in ((self.field, "F"), (self.component, "S"), (self.repetition, "R"), (self.subcomponent, "T")):
            out = out.replace(char, f"{e}{code}{e}")
        return out.replace("\r", " ").replace("\n", " ")


DEFAULT_ENCODING = Encoding()


def read_encoding(segment: str, where: str = "MSH") -> Encoding:
    """The encoding characters of a segment that starts 'MSH|^~\\&|' (or FHS/BHS), in whatever characters it uses."""
    if len(segment) < 8:
        raise Hl7Error(f"the {where} segment is too short to hold its encoding characters", f"{where}-2", code="102")
    field = segment[3]
    if field.isalnum() or field in "\r\n ":
        raise Hl7Error(f"{field!r} cannot be a field separator", f"{where}-1", code="102")
    end = segment.find(field, 4)
    chars = segment[4:end] if end >= 0 else ""
    if not 2 <= len(chars) <= 5 or len(set(chars + field)) != len(chars) + 1 or any(c.isalnum() or c in " \r\n" for c in chars):
        raise Hl7Error(f"{chars!r} are not valid encoding characters", f"{where}-2", code="102")
    padded = chars + "\x00" * (4 - len(chars)) if len(chars) < 4 else chars
    return Encoding(field, padded[0], padded[1], padded[2], padded[3])


_ESCAPES = {"F": "field", "S": "component", "T": "subcomponent", "R": "repetition", "E": "escape"}


def unescape(value: str, enc: Encoding = DEFAULT_ENCODING) -> str:
    """Decode \\F\\ \\S\\ \\T\\ \\R\\ \\E\\, \\Xhh..\\ (hex bytes, read as UTF-8 then Latin-1) and \\.br\\ (line
    break); highlighting (\\H\\, \\N\\) and other formatting escapes are dropped. Unknown ones stay."""
    e = enc.escape
    if e not in value:
        return value
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        j = value.find(e, i)
        if j < 0:
            out.append(value[i:])
            break
        out.append(value[i:j])
        k = value.find(e, j + 1)
        if k < 0:  # a lone escape character: keep it as it is
            out.append(value[j:])
            break
        code = value[j + 1 : k]
        if code in _ESCAPES:
            out.append(getattr(enc, _ESCAPES[code]))
        elif code[:1] == "X" and len(code) > 1:
            try:
                raw = bytes.fromhex(code[1:])
                out.append(raw.decode("utf-8") if _is_utf8(raw) else raw.decode("latin-1"))
            except ValueError:
                out.append(value[j : k + 1])
        elif code == ".br":
            out.append("\n")
        elif code in ("H", "N") or code[:1] in (".", "C", "M", "Z"):
            pass  # formatting and character-set switches: no text of their own
        else:
            out.append(value[j : k + 1])
        i = k + 1
    return "".join(out)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def parse_dtm(value: str, default_tz: tzinfo = UTC) -> datetime | None:
    """HL7 DTM/TS 'YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]' → aware datetime (the offset if given, else
    `default_tz`). Empty → None. Raises Hl7Error (not retried) for what is not a date-time."""
    value = value.split("^", 1)[0].strip() if value else ""
    if not value:
        return None
    offset = None
    for sign in ("+", "-"):
        pos = value.find(sign, 4)
        if pos > 0:
            value, zone = value[:pos], value[pos:]
            if len(zone) != 5 or not zone[1:].isdigit():
                raise Hl7Error(f"{zone!r} is not a UTC offset (+/-ZZZZ)", code="102", reject=False)
            minutes = int(zone[1:3]) * 60 + int(zone[3:5])
            offset = timezone(timedelta(minutes=minutes if sign == "+" else -minutes))
            break
    whole, _, fraction = value.partition(".")
    if not whole.isdigit() or len(whole) not in (4, 6, 8, 10, 12, 14):
        raise Hl7Error(f"{value!r} is not an HL7 date-time", code="102", reject=False)
    parts = [int(whole[0:4]), int(whole[4:6] or 1), int(whole[6:8] or 1), int(whole[8:10] or 0), int(whole[10:12] or 0), int(whole[12:14] or 0)]
    micro = int((fraction + "000000")[:6]) if fraction.isdigit() else 0
    try:
        naive = datetime(*parts, micro)  # noqa: DTZ001  (the zone is attached just below)
    except ValueError as exc:
        raise Hl7Error(f"{value!r} is not a valid date-time ({exc})", code="102", reject=False) from None
    if offset is not None:
        return naive.replace(tzinfo=offset)
    localize = getattr(default_tz, "localize", None)  # pytz-style zones
    return localize(naive) if localize else naive.replace(tzinfo=default_tz)


@dataclass(frozen=True)
class Header:
    """What the listener needs from MSH, read without a full parse."""

    encoding: Encoding
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    timestamp: str
    message_type: str
    trigger: str
    structure: str
    control_id: str
    processing_id: str
    version: str

    @property
    def sender(self) -> str:
        return f"{self.sending_application}/{self.sending_facility}"


def read_header(text: str) -> Header:
    """Read the MSH of one message. Raises Hl7Error naming the field that is missing or wrong."""
    if not text.startswith("MSH"):
        raise Hl7Error("a message must start with an MSH segment", "MSH", code="100")
    end = len(text)
    for sep in ("\r", "\n"):
        pos = text.find(sep)
        if 0 <= pos < end:
            end = pos
    segment = text[:end]
    enc = read_encoding(segment)
    fields = segment.split(enc.field)  # fields[n] is MSH-(n+1)

    def get(n: int) -> str:
        return fields[n - 1] if len(fields) >= n else ""

    def first(value: str) -> str:
        return unescape(value.split(enc.component, 1)[0], enc)

    msg_type = get(9).split(enc.component)
    kind = msg_type[0] if msg_type else ""
    if not kind:
        raise Hl7Error("the message type is missing", "MSH-9", code="101")
    control_id = unescape(get(10), enc).strip()
    if not control_id:
        raise Hl7Error("the message control id is missing", "MSH-10", code="101")
    if len(control_id) > 199:
        raise Hl7Error("the message control id is longer than 199 characters", "MSH-10", code="102")
    version = first(get(12))
    if not version:
        raise Hl7Error("the version id is missing", "MSH-12", code="101")
    if not version.startswith("2."):
        raise Hl7Error(f"version {version!r} is not HL7 v2", "MSH-12", code="203")
    return Header(
        encoding=enc,
        sending_application=first(get(3)), sending_facility=first(get(4)),
        receiving_application=first(get(5)), receiving_facility=first(get(6)),
        timestamp=first(get(7)),
        message_type=kind.upper(), trigger=(msg_type[1] if len(msg_type) > 1 else "").upper(),
        structure=(msg_type[2] if len(msg_type) > 2 else "").upper(),
        control_id=control_id, processing_id=first(get(11)), version=version,
    )


def split_messages(text: str) -> list[str]:
    """The messages of a frame or file: one message, or a batch (FHS/BHS … BTS/FTS) of them.
    Batch envelope segments are dropped; each message keeps its own MSH. Segments are re-joined
    with <CR>, whatever line ends the input used. Text before the first MSH that is not a batch
    header is returned as a message of its own, so it is rejected rather than silently lost."""
    messages: list[list[str]] = []
    current: list[str] | None = None
    for segment in SEGMENT_SPLIT.split(text):
        if not segment.strip():
            continue
        head = segment[:3]
        if head == "MSH":
            current = [segment]
            messages.append(current)
        elif head in _BATCH_SEGMENTS:
            current = None
        elif current is None:
            current = [segment]  # a stray segment: a message that will not read
            messages.append(current)
        else:
            current.append(segment)
    return ["\r".join(segments) + "\r" for segments in messages]


class Message:
    """Segments by id, fields by index (`msg.field("PID", 5)`), components and repetitions split on
    this message's own characters, escapes decoded on the way out."""

    __slots__ = ("encoding", "segments")

    def __init__(self, text: str, encoding: Encoding | None = None):
        if encoding is None:
            encoding = read_encoding(text[: text.find("\r") if "\r" in text else len(text)])
        self.encoding = encoding
        fs = encoding.field
        self.segments: list[tuple[str, list[str]]] = []
        for segment in SEGMENT_SPLIT.split(text):
            if not segment:
                continue
            fields = segment.split(fs)
            if fields[0] == "MSH":  # MSH-1 is the separator itself: shift so fields[n] is MSH-n
                fields.insert(1, fs)
            self.segments.append((fields[0], fields))

    def all(self, segment_id: str) -> list[list[str]]:
        return [fields for sid, fields in self.segments if sid == segment_id]

    def first(self, segment_id: str) -> list[str] | None:
        for sid, fields in self.segments:
            if sid == segment_id:
                return fields
        return None

    def groups(self, start: str) -> list[list[tuple[str, list[str]]]]:
        """The runs of segments that begin at each `start` segment (OBR with its OBX, …)."""
        out: list[list[tuple[str, list[str]]]] = []
        for sid, fields in self.segments:
            if sid == start:
                out.append([(sid, fields)])
            elif out:
                out[-1].append((sid, fields))
        return out

    # values ---------------------------------------------------------------------------------
    def raw(self, fields: list[str] | None, n: int) -> str:
        return fields[n] if fields is not None and len(fields) > n else ""

    def repetitions(self, fields: list[str] | None, n: int) -> list[str]:
        value = self.raw(fields, n)
        return value.split(self.encoding.repetition) if value else []

    def components(self, value: str) -> list[str]:
        """Components of one (repetition of a) field, each unescaped; subcomponents kept joined."""
        enc = self.encoding
        return [unescape(c, enc) for c in value.split(enc.component)]

    def component(self, value: str, n: int) -> str:
        """Component n (1-based) of a value, first subcomponent, unescaped."""
        parts = value.split(self.encoding.component)
        if len(parts) < n:
            return ""
        return unescape(parts[n - 1].split(self.encoding.subcomponent, 1)[0], self.encoding)

    def value(self, fields: list[str] | None, n: int, component: int = 1) -> str:
        """Field n's first repetition, component `component`, unescaped and stripped."""
        raw = self.raw(fields, n)
        if not raw:
            return ""
        return self.component(raw.split(self.encoding.repetition, 1)[0], component).strip()

    def text(self, fields: list[str] | None, n: int) -> str:
        """A whole field as text (TX/FT): repetitions joined by line breaks, escapes decoded."""
        return "\n".join(unescape(r, self.encoding) for r in self.repetitions(fields, n))
