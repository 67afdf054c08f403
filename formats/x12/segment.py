"""One X12 segment, and the typed reading of its elements with errors that name the element."""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Iterable
from decimal import Decimal

from formats.x12.errors import X12Error

# X12 numeric values (types R and N): an optional minus, digits, at most one decimal point.
# Exponents, "+", spaces and thousands separators are not X12, so Decimal() alone is too lenient.
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)\Z")
_INTEGER = re.compile(r"-?\d+\Z")
_CCYYMMDD = re.compile(r"\d{8}\Z")

CENT = Decimal("0.01")


def parse_number(text: str) -> Decimal | None:
    """The Decimal an X12 numeric value stands for, or None when `text` is not one."""
    if not _NUMBER.match(text):
        return None
    return Decimal(text)


# Remittances repeat the same amounts and dates thousands of times; Decimal and date are
# immutable, so parsing each distinct text once is safe and makes big files much cheaper.
@functools.lru_cache(maxsize=16384)
def parse_cents(text: str) -> Decimal | None:
    """The amount of an X12 monetary value with two decimal places, or None when `text` is not a
    number or has a fraction of a cent."""
    if not _NUMBER.match(text):
        return None
    number = Decimal(text)
    cents = number.quantize(CENT)
    return cents if cents == number else None


@functools.lru_cache(maxsize=4096)
def parse_ccyymmdd(text: str) -> datetime.date | None:
    """The date of an X12 D8 (CCYYMMDD) value, or None when `text` is not a real date."""
    if not _CCYYMMDD.match(text):
        return None
    try:
        return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


class Segment(list[str]):
    """A segment as the list of its elements: `segment[0]` is the id, `segment[4]` is element 04.

    `number` is the segment's 1-based position in the file, kept so every error can point at it.
    The readers below return None (or raise when required) for an element that is absent or empty,
    because X12 drops trailing empty elements and the two mean the same.
    """

    __slots__ = ("number",)

    def __init__(self, elements: Iterable[str] = (), number: int = 0) -> None:
        super().__init__(elements)
        self.number = number

    def __repr__(self) -> str:
        return f"Segment({list.__repr__(self)}, number={self.number})"

    @property
    def id(self) -> str:
        return self[0] if self else ""

    def element_name(self, index: int) -> str:
        return f"{self.id}{index:02d}"

    def error(self, reason: str, index: int | None = None) -> X12Error:
        """An X12Error pointing at this segment, and at element `index` when given."""
        element = self.element_name(index) if index is not None else ""
        return X12Error(reason, segment_number=self.number, segment_id=self.id, element=element)

    def get(self, index: int) -> str:
        """Element `index`, or "" when the segment stops before it."""
        return self[index] if index < len(self) else ""

    def required(self, index: int) -> str:
        value = self[index] if index < len(self) else ""
        if not value:
            raise self.error(f"{self.element_name(index)} is required", index)
        return value

    # The readers below inline `get`: they run for every amount of a payer's biggest file.

    def decimal(self, index: int) -> Decimal | None:
        """A numeric element (quantities, units, rates) as Decimal; None when empty."""
        value = self[index] if index < len(self) else ""
        if not value:
            return None
        if _NUMBER.match(value) is None:
            raise self.error(f"{value!r} is not a number", index)
        return Decimal(value)

    def amount(self, index: int) -> Decimal | None:
        """A monetary element as Decimal with two decimal places; None when empty.

        An amount with fractions of a cent is refused rather than rounded: posting must be right
        to the cent, and silently rounding a payer's figure would hide a broken file.
        """
        value = self[index] if index < len(self) else ""
        if not value:
            return None
        cents = parse_cents(value)
        if cents is None:
            if _NUMBER.match(value) is None:
                raise self.error(f"{value!r} is not a number", index)
            raise self.error(f"{value!r} is not an amount in whole cents", index)
        return cents

    def required_amount(self, index: int) -> Decimal:
        amount = self.amount(index)
        if amount is None:
            raise self.error(f"{self.element_name(index)} is required", index)
        return amount

    def integer(self, index: int) -> int | None:
        value = self[index] if index < len(self) else ""
        if not value:
            return None
        if _INTEGER.match(value) is None:
            raise self.error(f"{value!r} is not a whole number", index)
        return int(value)

    def required_integer(self, index: int) -> int:
        number = self.integer(index)
        if number is None:
            raise self.error(f"{self.element_name(index)} is required", index)
        return number

    def date(self, index: int) -> datetime.date | None:
        """A CCYYMMDD element as a date; None when empty."""
        value = self[index] if index < len(self) else ""
        if not value:
            return None
        parsed = parse_ccyymmdd(value)
        if parsed is None:
            raise self.error(f"{value!r} is not a date (CCYYMMDD)", index)
        return parsed

    def required_date(self, index: int) -> datetime.date:
        parsed = self.date(index)
        if parsed is None:
            raise self.error(f"{self.element_name(index)} is required", index)
        return parsed
