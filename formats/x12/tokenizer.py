"""X12 tokenizer: delimiters read from the ISA, segments split into elements, and the envelope.

Nothing is assumed about the delimiters: the element separator is the character after "ISA", the
repetition separator is ISA11 (5010), the component separator is ISA16 and the segment terminator
is the character right after ISA16. Line breaks after terminators and a UTF-8 byte order mark are
tolerated because payers and clearinghouses send both.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from formats.x12.errors import X12Error
from formats.x12.segment import Segment

# The ISA is fixed-width: 106 characters from "ISA" through the segment terminator.
ISA_LENGTH = 106
# Widths of ISA01..ISA16, from the X12 interchange control structure.
ISA_WIDTHS = (2, 10, 2, 10, 2, 15, 2, 15, 6, 4, 1, 5, 9, 1, 1, 1)

_LINE_BREAKS = "\r\n"
# Blank characters that may sit between segments but never start one (segment ids are letters and digits).
_BLANKS = " \t\r\n"


@dataclass(frozen=True)
class Delimiters:
    """The four separators of an interchange. `repetition` is "" when there is none (ISA11 = "U", before 5010)."""

    element: str = "*"
    component: str = ":"
    repetition: str = "^"
    segment: str = "~"

    def __post_init__(self) -> None:
        used = [self.element, self.component, self.segment] + ([self.repetition] if self.repetition else [])
        for character in used:
            if len(character) != 1 or character.isalnum() or character == " ":
                raise ValueError(f"{character!r} cannot be an X12 delimiter: one character, not a letter, digit or space")
        if len(set(used)) != len(used):
            raise ValueError(f"X12 delimiters must differ from each other, got {used!r}")

    def components(self, value: str) -> list[str]:
        """The components of a composite element ("HC:99213:25" → ["HC", "99213", "25"])."""
        return value.split(self.component)

    def repetitions(self, value: str) -> list[str]:
        """The repeats of a repeating element; the whole value when the interchange has no repetition separator."""
        return value.split(self.repetition) if self.repetition else [value]


def components(value: str, separator: Delimiters | str) -> list[str]:
    """Split a composite element with the component separator (or the interchange's Delimiters)."""
    if isinstance(separator, Delimiters):
        separator = separator.component
    return value.split(separator)


# --- reading ---------------------------------------------------------------------------------


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while reading a file.

    A payer's big 835 becomes hundreds of thousands of small lists and objects but no reference
    cycles, so the collector would run again and again for nothing: measured, that is most of the
    parse time of a 10,000-claim file. Only the caller that found it enabled turns it back on, so
    nested or concurrent readers never leave it off.
    """
    was_enabled = gc.isenabled()
    if was_enabled:
        gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _as_text(data: str | bytes) -> str:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            # X12's basic and extended character sets fit in Latin-1; a stray byte should not block a remittance.
            data = data.decode("latin-1")
    return data.removeprefix("\ufeff")


def _skip_blanks(text: str, position: int) -> int:
    while position < len(text) and text[position] in _BLANKS:
        position += 1
    return position


def read_delimiters(data: str | bytes, position: int = 0, segment_number: int = 1) -> Delimiters:
    """The delimiters of the interchange whose ISA starts at `position` (after any blanks).

    Raises X12Error naming the ISA element at fault when the text does not start with a complete,
    fixed-width ISA.
    """
    text = _as_text(data)
    start = _skip_blanks(text, position)
    if start >= len(text):
        raise X12Error("the file is empty: an X12 interchange starts with ISA", segment_number=segment_number)
    if not text.startswith("ISA", start):
        found = text[start : start + 20]
        raise X12Error(f"an X12 interchange starts with ISA, found {found!r}", segment_number=segment_number)

    def fail(reason: str, element: str = "") -> X12Error:
        return X12Error(reason, segment_number=segment_number, segment_id="ISA", element=element)

    if start + 3 >= len(text):
        raise fail("the ISA is truncated: it ends before its first element separator")
    element = text[start + 3]
    cursor = start + 3  # at the separator before ISA01
    for index, width in enumerate(ISA_WIDTHS, start=1):
        name = f"ISA{index:02d}"
        end = cursor + 1 + width  # the separator after this element (the terminator after ISA16)
        early = text.find(element, cursor + 1, min(end, len(text)))
        if early != -1:
            raise fail(f"{name} must be {width} characters wide (the ISA is fixed-width), it is {early - cursor - 1}", name)
        if end >= len(text):
            raise fail(f"the ISA is truncated in {name}: the file ends after {len(text) - start} characters, a 5010 ISA has {ISA_LENGTH}", name)
        if index < len(ISA_WIDTHS) and text[end] != element:
            raise fail(f"{name} must be {width} characters wide (the ISA is fixed-width), it is longer", name)
        cursor = end
    # `cursor` is now at the segment terminator, just past ISA16.
    component = text[cursor - 1]
    terminator = text[cursor]
    repetition_value = text[start + 82]  # ISA11: the repetition separator in 5010, "U" before
    repetition = "" if repetition_value.isalnum() else repetition_value
    try:
        return Delimiters(element=element, component=component, repetition=repetition, segment=terminator)
    except ValueError as exc:
        raise fail(f"unusable delimiters: {exc}")


def _strip_characters(delimiters: Delimiters) -> tuple[str, str]:
    """The blanks dropped before a segment and the line breaks dropped after one (none that is a delimiter)."""
    used = (delimiters.element, delimiters.component, delimiters.repetition)
    leading = "".join(character for character in _BLANKS if character not in used)
    trailing = "".join(character for character in _LINE_BREAKS if character not in used)
    return leading, trailing


def segment_texts(text: str, delimiters: Delimiters, *, exact: bool = True) -> list[str]:
    """The segments of `text` as strings, not split into elements yet.

    Line breaks around segments are dropped (unless they are delimiters themselves); empty
    segments, such as a trailing line break, are skipped. Most files have no blank around their
    terminators, so `text` is searched for one first (single characters, which is fast) and each
    segment is stripped only when there is something to strip.

    `exact=False` saves the two searches that a blank character other than a line break (a space
    or tab before a segment) and an empty segment in the middle of the text need: such segments
    are then left as they are, an id starting with a blank or an empty one, which a reader that
    refuses unknown segment ids leaves to an exact reading (as `parse_835` does).
    """
    leading, trailing = _strip_characters(delimiters)
    terminator = delimiters.segment
    texts = text.split(terminator)
    strip = any(character in text for character in trailing)
    if exact and not strip:
        # A space is inside elements of every file: only one right after a terminator (or first) is stripped.
        strip = (
            any(character in text for character in leading if character != " ")
            or (" " in leading and (text.startswith(" ") or terminator + " " in text))
        )
    if strip:
        return [segment for raw in texts if (segment := raw.lstrip(leading).rstrip(trailing))]
    if exact and (not texts[0] or terminator * 2 in text):
        return [raw for raw in texts if raw]
    if not texts[-1]:  # the text ends with a terminator, as it should
        texts.pop()
    return texts


def split_segments(text: str, delimiters: Delimiters, first_number: int = 1) -> list[Segment]:
    """Split `text` into segments with known delimiters, numbering them from `first_number`.

    Line breaks around segments are dropped (unless they are delimiters themselves); empty
    segments, such as a trailing line break, are skipped without taking a number.
    """
    return _numbered_segments(segment_texts(text, delimiters), delimiters.element, first_number)


def _numbered_segments(texts: list[str], element: str, first_number: int) -> list[Segment]:
    segments: list[Segment] = []
    append = segments.append
    # list's own constructor, skipping Segment.__init__: this loop runs once per segment of big files.
    new, fill = list.__new__, list.__init__
    for number, raw in enumerate(texts, first_number):
        segment = new(Segment)
        fill(segment, raw.split(element))
        segment.number = number
        append(segment)
    return segments


def _interchange_end(text: str, start: int, delimiters: Delimiters) -> int:
    """The offset just past the IEA of the interchange starting at `start` (the end of text without one).

    The IEA is the first "IEA" and element separator after the ISA that starts a segment: only
    blanks between it and the terminator before it.
    """
    terminator = delimiters.segment
    first = start + ISA_LENGTH - 1  # the ISA's terminator, the first one an IEA can follow
    tag = "IEA" + delimiters.element
    found = text.find(tag, first + 1)
    while found != -1:
        before = found - 1
        while before >= first and text[before] != terminator and text[before] in _BLANKS:
            before -= 1
        if before >= first and text[before] == terminator:
            end = text.find(terminator, found + len(tag))
            return len(text) if end == -1 else end + 1
        found = text.find(tag, found + 1)
    return len(text)


def interchange_texts(data: str | bytes, *, exact: bool = True) -> Iterator[tuple[Delimiters, int, list[str]]]:
    """Each interchange in the file: its delimiters, the number of its ISA in the file and its
    segments as strings (see `segment_texts`, and `exact` there).

    Raises X12Error when the file does not start with a complete ISA, or when text after an IEA is
    not another interchange.
    """
    text = _as_text(data)
    position = _skip_blanks(text, 0)
    number = 1
    while True:
        delimiters = read_delimiters(text, position, number)
        end = _interchange_end(text, position, delimiters)
        texts = segment_texts(text[position:end], delimiters, exact=exact)
        yield delimiters, number, texts
        number += len(texts)
        position = _skip_blanks(text, end)
        if position >= len(text):
            return
        if not text.startswith("ISA", position):
            found = text[position : position + 20]
            raise X12Error(f"text after IEA is not another interchange: {found!r}", segment_number=number)


def _interchange_chunks(data: str | bytes) -> Iterator[tuple[Delimiters, list[Segment]]]:
    """Each interchange in the file with its own delimiters and segments, numbered through the file."""
    for delimiters, first_number, texts in interchange_texts(data):
        yield delimiters, _numbered_segments(texts, delimiters.element, first_number)


def tokenize(data: str | bytes) -> list[Segment]:
    """All segments of an X12 file, each a list of elements with its 1-based number.

    Delimiters are read from each interchange's ISA. Raises X12Error when the file does not start
    with a complete ISA, or when text after an IEA is not another interchange.
    """
    with paused_gc():
        return [segment for _, segments in _interchange_chunks(data) for segment in segments]


def serialize(segments: Iterable[Sequence[str]], delimiters: Delimiters, *, line_break: str = "") -> str:
    """The inverse of tokenize: join elements and segments with `delimiters`.

    Elements are written as given (trailing empty elements included), so a writer that wants them
    dropped, as X12 asks, trims them first. `line_break` (e.g. "\\n") is added after each terminator
    for readable files. Raises ValueError when an element contains one of the delimiters.
    """
    forbidden = {delimiters.element, delimiters.segment, *line_break}
    parts = []
    for segment in segments:
        for value in segment:
            if any(character in value for character in forbidden):
                raise ValueError(f"element {value!r} of segment {segment[0]!r} contains a delimiter")
        parts.append(delimiters.element.join(segment) + delimiters.segment + line_break)
    return "".join(parts)


# --- envelope --------------------------------------------------------------------------------


@dataclass
class Transaction:
    """One transaction set: its segments from ST through SE."""

    segments: list[Segment]

    @property
    def header(self) -> Segment:
        return self.segments[0]

    @property
    def trailer(self) -> Segment:
        return self.segments[-1]

    @property
    def body(self) -> list[Segment]:
        """The segments between ST and SE."""
        return self.segments[1:-1]

    @property
    def transaction_set(self) -> str:
        return self.header.get(1)

    @property
    def control_number(self) -> str:
        return self.header.get(2)

    @property
    def implementation(self) -> str:
        return self.header.get(3)


@dataclass
class FunctionalGroup:
    """One GS/GE functional group and its transaction sets."""

    header: Segment
    trailer: Segment
    transactions: list[Transaction] = field(default_factory=list)

    @property
    def functional_id(self) -> str:
        return self.header.get(1)

    @property
    def sender(self) -> str:
        return self.header.get(2)

    @property
    def receiver(self) -> str:
        return self.header.get(3)

    @property
    def control_number(self) -> str:
        return self.header.get(6)

    @property
    def version(self) -> str:
        return self.header.get(8)


@dataclass
class Interchange:
    """One ISA/IEA interchange: its delimiters, functional groups and any TA1 acknowledgments."""

    delimiters: Delimiters
    header: Segment
    trailer: Segment
    groups: list[FunctionalGroup] = field(default_factory=list)
    acknowledgments: list[Segment] = field(default_factory=list)

    @property
    def sender_qualifier(self) -> str:
        return self.header.get(5).strip()

    @property
    def sender_id(self) -> str:
        return self.header.get(6).strip()

    @property
    def receiver_qualifier(self) -> str:
        return self.header.get(7).strip()

    @property
    def receiver_id(self) -> str:
        return self.header.get(8).strip()

    @property
    def control_number(self) -> str:
        return self.header.get(13)

    @property
    def usage(self) -> str:
        """ISA15: "P" production, "T" test."""
        return self.header.get(15)

    @property
    def transactions(self) -> list[Transaction]:
        return [transaction for group in self.groups for transaction in group.transactions]


def _same_control_number(first: str, second: str) -> bool:
    # Some senders drop leading zeros in the trailer; the number is what must agree.
    return first == second or (first.isdigit() and second.isdigit() and int(first) == int(second))


def _check_count(trailer: Segment, index: int, actual: int, what: str) -> None:
    declared = trailer.required_integer(index)
    if declared != actual:
        raise trailer.error(f"{trailer.element_name(index)} says {declared} {what}, found {actual}", index)


def _check_control(trailer: Segment, index: int, header: Segment, header_index: int) -> None:
    if not _same_control_number(trailer.required(index), header.get(header_index)):
        raise trailer.error(
            f"{trailer.element_name(index)} {trailer.get(index)!r} does not match "
            f"{header.element_name(header_index)} {header.get(header_index)!r} (segment {header.number})",
            index,
        )


def _build_interchange(delimiters: Delimiters, segments: list[Segment]) -> Interchange:
    isa = segments[0]
    interchange = Interchange(delimiters=delimiters, header=isa, trailer=isa)
    group: FunctionalGroup | None = None
    transaction: list[Segment] | None = None
    for segment in segments[1:]:
        segment_id = segment[0]
        if transaction is not None:
            if segment_id in ("ST", "GS", "GE", "ISA", "IEA"):
                st = transaction[0]
                raise segment.error(f"{segment_id} before SE closed transaction set {st.get(2)!r} (ST at segment {st.number})")
            transaction.append(segment)
            if segment_id == "SE":
                _check_count(segment, 1, len(transaction), "segments from ST through SE")
                _check_control(segment, 2, transaction[0], 2)
                assert group is not None  # a transaction only opens inside a group
                group.transactions.append(Transaction(transaction))
                transaction = None
        elif segment_id == "ST":
            if group is None:
                raise segment.error("ST outside a functional group (no GS before it)")
            segment.required(1)
            segment.required(2)
            transaction = [segment]
        elif segment_id == "GS":
            if group is not None:
                raise segment.error(f"GS before GE closed functional group {group.control_number!r} (GS at segment {group.header.number})")
            segment.required(1)
            segment.required(6)
            group = FunctionalGroup(header=segment, trailer=segment)
        elif segment_id == "GE":
            if group is None:
                raise segment.error("GE without a GS")
            _check_count(segment, 1, len(group.transactions), "transaction sets")
            _check_control(segment, 2, group.header, 6)
            group.trailer = segment
            interchange.groups.append(group)
            group = None
        elif segment_id == "IEA":
            if group is not None:
                raise segment.error(f"IEA before GE closed functional group {group.control_number!r} (GS at segment {group.header.number})")
            _check_count(segment, 1, len(interchange.groups), "functional groups")
            _check_control(segment, 2, isa, 13)
            interchange.trailer = segment
            return interchange
        elif segment_id == "TA1" and group is None:
            interchange.acknowledgments.append(segment)
        else:
            raise segment.error(f"{segment_id} outside a transaction set (only ST..SE may hold it)")
    last = segments[-1]
    open_part = "transaction set" if transaction is not None else "functional group" if group is not None else "interchange"
    raise last.error(f"the file ends inside an open {open_part}: no IEA closes the interchange of ISA13 {isa.get(13)!r}")


def read_interchanges(data: str | bytes) -> list[Interchange]:
    """Every interchange of an X12 file, with envelope counts and control numbers checked.

    Raises X12Error naming the segment at fault: an SE01/GE01/IEA01 count that does not match,
    an SE02/GE02/IEA02 control number that differs from ST02/GS06/ISA13, a segment outside its
    envelope, or a missing trailer.
    """
    with paused_gc():
        return [_build_interchange(delimiters, segments) for delimiters, segments in _interchange_chunks(data)]
