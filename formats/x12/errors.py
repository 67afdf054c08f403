"""The one error every X12 reader and writer raises."""

from __future__ import annotations


class X12Error(ValueError):
    """An X12 file that cannot be read, pointing at the place that is wrong.

    `segment_number` is the 1-based position of the segment in the file (for a file holding one
    interchange, its position in the interchange; 0 when no segment applies), `segment_id` the
    segment's id ("CLP"), `element` the element's name ("CLP04", or "" when the whole segment is
    at fault) and `reason` what is wrong. `str(error)` names all of them:
    "segment 14 (CLP), element CLP04: '12.3.4' is not a number".
    """

    def __init__(self, reason: str, *, segment_number: int = 0, segment_id: str = "", element: str = "") -> None:
        self.reason = reason
        self.segment_number = segment_number
        self.segment_id = segment_id
        self.element = element
        super().__init__(self._describe())

    def _describe(self) -> str:
        place = ""
        if self.segment_number:
            place = f"segment {self.segment_number}"
            if self.segment_id:
                place += f" ({self.segment_id})"
        elif self.segment_id:
            place = f"segment {self.segment_id}"
        if self.element:
            place = f"{place}, element {self.element}" if place else f"element {self.element}"
        return f"{place}: {self.reason}" if place else self.reason

    def __reduce__(self):
        # Keyword-only arguments defeat the default exception pickling (task queues pickle errors).
        return (_rebuild, (self.reason, self.segment_number, self.segment_id, self.element))


def _rebuild(reason: str, segment_number: int, segment_id: str, element: str) -> X12Error:
    return X12Error(reason, segment_number=segment_number, segment_id=segment_id, element=element)
