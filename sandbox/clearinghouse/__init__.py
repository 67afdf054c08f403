"""A simulated clearinghouse and its test payer: 837 claims in, 999 back, 835 remittances later, 270/271 eligibility.

`Clearinghouse` (vendor.py) is the sandbox vendor; `Member` and `Roster` (payer.py) describe who the
test payer covers. Pure Python with the X12 codecs of `formats.x12`; no Django.
"""

from __future__ import annotations

from sandbox.clearinghouse.payer import Member, Roster, roster_of
from sandbox.clearinghouse.vendor import Clearinghouse, Submission

__all__ = ["Clearinghouse", "Member", "Roster", "Submission", "roster_of"]
