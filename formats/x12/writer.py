"""Writing X12: delimiters, segments, number formats and the ISA/GS/ST envelope.

A transaction is built as a list of `SegmentToWrite` values (plain data); `write_interchange` renders them
with the chosen delimiters, counts them for SE01, and wraps them in ST/SE, GS/GE and ISA/IEA. A value
that contains one of the delimiters is refused rather than escaped, because X12 has no escaping: it
would silently split an element or end a segment at the receiver.

`Delimiters` is the tokenizer's, so a file is written and read with the same description of its
separators; a 5010 writer needs all four (ISA11 is the repetition separator).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from formats.x12.errors import X12Error
from formats.x12.tokenizer import Delimiters

# A data element is a simple value, a composite (a sequence of components), or absent (None or "").
Component = str | None
Element = str | Sequence[Component] | None

# ISA field widths (the ISA is fixed-width: receivers find the delimiters by position).
ISA_AUTHORIZATION_WIDTH = 10
ISA_QUALIFIER_WIDTH = 2
ISA_ID_WIDTH = 15
MAX_INTERCHANGE_CONTROL_NUMBER = 999_999_999  # ISA13 is 9 digits
INTERCHANGE_VERSION = "00501"  # ISA12 for every 5010 guide
GROUP_VERSION_AGENCY = "X"  # GS07: Accredited Standards Committee X12
USAGE_INDICATORS = frozenset({"T", "P"})  # ISA15: test, production


DEFAULT_DELIMITERS = Delimiters()


def _delimiter_in(value: str, delimiters: Delimiters) -> tuple[str, str] | None:
    """The first delimiter (or control character) found in `value` as (name, character), or None."""
    for name, char in (
        ("element separator", delimiters.element),
        ("component separator", delimiters.component),
        ("repetition separator", delimiters.repetition),
        ("segment terminator", delimiters.segment),
    ):
        if char and char in value:
            return name, char
    for char in value:
        # Line breaks, tabs and other control characters are not X12 data, and a reader that drops
        # line breaks between segments would change the value.
        if ord(char) < 0x20 or ord(char) == 0x7F:
            return "control character", char
    return None


class DelimiterInValueError(X12Error):
    """A value to write contains one of the delimiters (an X12Error, so a ValueError).

    `segment_number` is the segment's position in the file (ISA is 1), as the readers count, or 0
    when the segment was rendered on its own; `segment_id` and `element` (NM103, or SV101-2 for a
    component) say which value.
    """

    def __init__(self, segment_id: str, element: str, value: str, delimiter_name: str, delimiter: str,
                 position: int | None = None) -> None:
        self.value = value
        super().__init__(
            f"value {value!r} contains the {delimiter_name} {delimiter!r}",
            segment_number=position or 0,
            segment_id=segment_id,
            element=element,
        )


@dataclass(frozen=True)
class SegmentToWrite:
    """One segment before rendering: its id and its elements (element 1 first)."""

    id: str
    elements: tuple[Element, ...]


def segment(segment_id: str, *elements: Element) -> SegmentToWrite:
    """Build a segment; a composite element is given as a tuple or list of components."""
    return SegmentToWrite(segment_id, tuple(elements))


def _trim(values: list[str]) -> list[str]:
    while values and values[-1] == "":
        values.pop()
    return values


def render_segment(seg: SegmentToWrite, delimiters: Delimiters = DEFAULT_DELIMITERS, *, position: int | None = None) -> str:
    """The segment as text, with its terminator.

    Trailing empty elements (and trailing empty components of a composite) are dropped, as X12
    requires. `position` is the segment's place in the file, for the error. Raises
    `DelimiterInValueError` (a ValueError) when a value contains a delimiter or a control character.
    """
    rendered: list[str] = []
    for index, element in enumerate(seg.elements, start=1):
        name = f"{seg.id}{index:02d}"
        if element is None:
            rendered.append("")
        elif isinstance(element, str):
            _check(seg.id, name, element, delimiters, position)
            rendered.append(element)
        else:
            components: list[str] = []
            for component_index, component in enumerate(element, start=1):
                value = component or ""
                _check(seg.id, f"{name}-{component_index}", value, delimiters, position)
                components.append(value)
            rendered.append(delimiters.component.join(_trim(components)))
    return delimiters.element.join([seg.id, *_trim(rendered)]) + delimiters.segment


def _check(segment_id: str, element: str, value: str, delimiters: Delimiters, position: int | None) -> None:
    found = _delimiter_in(value, delimiters)
    if found is not None:
        raise DelimiterInValueError(segment_id, element, value, found[0], found[1], position)


def format_amount(amount: Decimal) -> str:
    """A monetary amount as an X12 decimal number (R): no trailing zeros, at most two decimals.

    125.00 → "125", 125.50 → "125.5", 125.25 → "125.25", -5 → "-5". Raises TypeError for a
    non-Decimal (floats are never money) and ValueError for fractions of a cent.
    """
    if not isinstance(amount, Decimal):
        raise TypeError(f"amounts must be Decimal, got {type(amount).__name__}")
    if amount != amount.quantize(Decimal("0.01")):
        raise ValueError(f"amount {amount} has fractions of a cent")
    return format_decimal(amount)


def format_decimal(value: Decimal) -> str:
    """A Decimal as an X12 decimal number (R): no exponent, no trailing zeros, no trailing point."""
    if not isinstance(value, Decimal):
        raise TypeError(f"decimal numbers must be Decimal, got {type(value).__name__}")
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def format_date(value: date) -> str:
    """CCYYMMDD (D8)."""
    return value.strftime("%Y%m%d")


def format_time(value: datetime) -> str:
    """HHMM."""
    return value.strftime("%H%M")


@dataclass(frozen=True)
class Envelope:
    """What the ISA and GS say: who sends to whom, the control number, when, and which guide.

    `control_number` is used for ISA13 (zero-padded to 9 digits) and GS06. `version` is the
    implementation guide (GS08 and ST03), e.g. 005010X222A1; `functional_id` is GS01 (HC for
    claims, HS for eligibility inquiries).
    """

    sender_id: str
    receiver_id: str
    control_number: int
    functional_id: str
    version: str
    created_at: datetime
    sender_qualifier: str = "ZZ"
    receiver_qualifier: str = "ZZ"
    application_sender: str = ""
    application_receiver: str = ""
    usage_indicator: str = "T"
    acknowledgment_requested: bool = False

    @classmethod
    def between(cls, submitter, receiver, *, control_number: int, functional_id: str, version: str, created_at: datetime,
                usage_indicator: str = "T") -> Envelope:
        """The envelope from a submitter to a receiver (formats.x12.model), as every writer here needs it."""
        return cls(
            sender_id=submitter.interchange_id, receiver_id=receiver.interchange_id,
            sender_qualifier=submitter.interchange_id_qualifier, receiver_qualifier=receiver.interchange_id_qualifier,
            application_sender=submitter.application_code, application_receiver=receiver.application_code,
            control_number=control_number, functional_id=functional_id, version=version, created_at=created_at,
            usage_indicator=usage_indicator,
        )

    def __post_init__(self) -> None:
        if not 1 <= self.control_number <= MAX_INTERCHANGE_CONTROL_NUMBER:
            raise ValueError(f"control number must be 1 to {MAX_INTERCHANGE_CONTROL_NUMBER}, got {self.control_number}")
        if self.usage_indicator not in USAGE_INDICATORS:
            raise ValueError(f"usage indicator (ISA15) must be T or P, got {self.usage_indicator!r}")
        for name in ("sender_qualifier", "receiver_qualifier"):
            if len(getattr(self, name)) != ISA_QUALIFIER_WIDTH:
                raise ValueError(f"{name} must be {ISA_QUALIFIER_WIDTH} characters for the ISA, got {getattr(self, name)!r}")
        for name in ("sender_id", "receiver_id"):
            value = getattr(self, name)
            if not value or len(value) > ISA_ID_WIDTH:
                raise ValueError(f"{name} must be 1 to {ISA_ID_WIDTH} characters for the ISA, got {value!r}")
        if not self.application_sender:
            object.__setattr__(self, "application_sender", self.sender_id)
        if not self.application_receiver:
            object.__setattr__(self, "application_receiver", self.receiver_id)


def now() -> datetime:
    """The default creation time of a file: aware, UTC."""
    return datetime.now(UTC)


def _isa(envelope: Envelope, delimiters: Delimiters) -> str:
    fields = {
        "ISA05": envelope.sender_qualifier,
        "ISA06": envelope.sender_id.ljust(ISA_ID_WIDTH),
        "ISA07": envelope.receiver_qualifier,
        "ISA08": envelope.receiver_id.ljust(ISA_ID_WIDTH),
    }
    for name, value in fields.items():
        _check("ISA", name, value, delimiters, 1)
    elements = [
        "ISA",
        "00",
        " " * ISA_AUTHORIZATION_WIDTH,
        "00",
        " " * ISA_AUTHORIZATION_WIDTH,
        fields["ISA05"],
        fields["ISA06"],
        fields["ISA07"],
        fields["ISA08"],
        envelope.created_at.strftime("%y%m%d"),
        format_time(envelope.created_at),
        delimiters.repetition,
        INTERCHANGE_VERSION,
        f"{envelope.control_number:09d}",
        "1" if envelope.acknowledgment_requested else "0",
        envelope.usage_indicator,
        delimiters.component,
    ]
    # Rendered by hand: ISA11 and ISA16 *are* delimiters, and the ISA is fixed-width (never trimmed).
    return delimiters.element.join(elements) + delimiters.segment


def write_interchange(
    envelope: Envelope,
    transaction_set_id: str,
    transactions: Sequence[Sequence[SegmentToWrite]],
    *,
    delimiters: Delimiters = DEFAULT_DELIMITERS,
    line_breaks: bool = False,
) -> str:
    """One interchange with one functional group holding `transactions`.

    Each transaction is its body: the segments between ST and SE, which are added here with
    ST02 = 0001, 0002… and SE01 = the segment count including ST and SE. With `line_breaks`, a
    newline follows each segment terminator (readers of X12 accept it; people find it easier).
    Raises `DelimiterInValueError` when a value contains a delimiter, naming the segment's position
    in the file (ISA is 1, as readers count) and the element.
    """
    if not transactions:
        raise ValueError("an interchange needs at least one transaction")
    if not delimiters.repetition:
        raise ValueError("a 5010 interchange needs a repetition separator (ISA11)")
    date_time = envelope.created_at
    lines = [_isa(envelope, delimiters)]
    group_control = str(envelope.control_number)
    lines.append(
        render_segment(
            segment(
                "GS",
                envelope.functional_id,
                envelope.application_sender,
                envelope.application_receiver,
                format_date(date_time),
                format_time(date_time),
                group_control,
                GROUP_VERSION_AGENCY,
                envelope.version,
            ),
            delimiters,
            position=2,
        )
    )
    for number, body in enumerate(transactions, start=1):
        control = f"{number:04d}"
        segments = [segment("ST", transaction_set_id, control, envelope.version), *body]
        segments.append(segment("SE", str(len(segments) + 1), control))
        first = len(lines) + 1
        lines.extend(render_segment(seg, delimiters, position=position) for position, seg in enumerate(segments, start=first))
    lines.append(render_segment(segment("GE", str(len(transactions)), group_control), delimiters, position=len(lines) + 1))
    lines.append(render_segment(segment("IEA", "1", f"{envelope.control_number:09d}"), delimiters, position=len(lines) + 1))
    separator = "\n" if line_breaks and delimiters.segment != "\n" else ""
    return separator.join(lines) + separator
