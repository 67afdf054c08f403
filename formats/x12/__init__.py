"""X12 005010 codecs. Re-exported here: the tokenizer and envelope, the 835 remittance reader and
the 999 acknowledgment reader; the 837 writer and 270/271 live in their own modules.

Pure Python without Django: the sandbox clearinghouse imports these too.
"""

from __future__ import annotations

from formats.x12.ack999 import Ack999, ElementError, SegmentError, TransactionAck, parse_999
from formats.x12.era835 import (
    Adjustment,
    Entity,
    EraClaim,
    EraLine,
    Procedure,
    ProviderAdjustment,
    Remittance835,
    balance_difference,
    claim_balance_difference,
    line_balance_difference,
    parse_835,
)
from formats.x12.errors import X12Error
from formats.x12.segment import Segment
from formats.x12.tokenizer import (
    Delimiters,
    FunctionalGroup,
    Interchange,
    Transaction,
    components,
    read_delimiters,
    read_interchanges,
    serialize,
    split_segments,
    tokenize,
)

__all__ = [
    "Ack999",
    "Adjustment",
    "Delimiters",
    "ElementError",
    "Entity",
    "EraClaim",
    "EraLine",
    "FunctionalGroup",
    "Interchange",
    "Procedure",
    "ProviderAdjustment",
    "Remittance835",
    "Segment",
    "SegmentError",
    "Transaction",
    "TransactionAck",
    "X12Error",
    "balance_difference",
    "claim_balance_difference",
    "components",
    "line_balance_difference",
    "parse_835",
    "parse_999",
    "read_delimiters",
    "read_interchanges",
    "serialize",
    "split_segments",
    "tokenize",
]
