"""Broken 835 files are refused whole, with the segment number, segment id and element named."""

from __future__ import annotations

from pathlib import Path

import pytest

from formats.x12.era835 import parse_835
from formats.x12.errors import X12Error

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "x12"


def refuse(text: str) -> X12Error:
    with pytest.raises(X12Error) as caught:
        parse_835(text)
    return caught.value


def where(error: X12Error) -> tuple[int, str, str]:
    return error.segment_number, error.segment_id, error.element


def test_bad_amount():
    error = refuse((FIXTURES / "malformed/835_bad_amount.edi").read_text())

    assert where(error) == (9, "CLP", "CLP04")
    assert str(error) == "segment 9 (CLP), element CLP04: '12.3.4' is not a number"


def test_missing_required_element():
    error = refuse((FIXTURES / "malformed/835_missing_trace_number.edi").read_text())

    assert where(error) == (5, "TRN", "TRN02")
    assert "TRN02 is required" in str(error)


def test_se_count_wrong():
    error = refuse((FIXTURES / "malformed/835_se_count_wrong.edi").read_text())

    assert where(error) == (11, "SE", "SE01")


def test_svc_before_clp():
    error = refuse((FIXTURES / "malformed/835_svc_before_clp.edi").read_text())

    assert where(error) == (9, "SVC", "")
    assert "out of order" in error.reason


def test_truncated_isa():
    error = refuse((FIXTURES / "malformed/835_truncated_isa.edi").read_text())

    assert where(error) == (1, "ISA", "ISA08")


# Variations on one valid file (segments: ISA 1, GS 2, ST 3, BPR 4, TRN 5, N1 6, REF 7, N1 8,
# LX 9, CLP 10, CAS 11, NM1 12, PLB 13, PLB 14, SE 15).
@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("BPR*I*169.75*", "BPR*I**", (4, "BPR", "BPR02")),
        ("BPR*I*169.75*", "BPR*I*1.6975E2*", (4, "BPR", "BPR02")),
        ("BPR*I*169.75*", "BPR*I*169.755*", (4, "BPR", "BPR02")),
        ("*ACH*CCP*", "*EFT*CCP*", (4, "BPR", "BPR04")),
        ("*987654321*20250321~", "*987654321*20250231~", (4, "BPR", "BPR16")),
        ("CLP*PCN3001*1*250*200*50*", "CLP**1*250*200*50*", (10, "CLP", "CLP01")),
        ("CLP*PCN3001*1*250*200*50*", "CLP*PCN3001**250*200*50*", (10, "CLP", "CLP02")),
        ("CLP*PCN3001*1*250*200*50*", "CLP*PCN3001*1**200*50*", (10, "CLP", "CLP03")),
        ("CLP*PCN3001*1*250*200*50*", "CLP*PCN3001*1*250**50*", (10, "CLP", "CLP04")),
        ("CLP*PCN3001*1*250*200*50*", "CLP*PCN3001*1*250*200*5O*", (10, "CLP", "CLP05")),
        ("CAS*PR*1*50~", "CAS*PR*1~", (11, "CAS", "CAS03")),
        ("CAS*PR*1*50~", "CAS*PR*1*50*one~", (11, "CAS", "CAS04")),
        ("CAS*PR*1*50~", "CAS*PR*1*40****10~", (11, "CAS", "CAS05")),
        ("*L6:PCN3001*-4.75*", "*L6:PCN3001*-4,75*", (13, "PLB", "PLB04")),
        ("*FB:ACM2025010100099*50*", "**50*", (13, "PLB", "PLB05")),
        ("PLB*1234567893*20251231*72", "PLB*1234567893*2025-12-31*72", (14, "PLB", "PLB02")),
        ("TRN*1*EFT20250321001*1512345678~", "", (5, "N1", "")),  # no TRN before the payer
        ("N1*PR*ACME HEALTH PLAN~", "", (7, "N1", "")),  # payee without payer
        ("N1*PE*RIVERSIDE FAMILY MEDICINE*XX*1234567893~", "", (8, "LX", "")),
        ("N1*PR*", "N1*XX*", (6, "N1", "N101")),
        ("BPR*I*169.75*", "TRN*I*169.75*", (4, "TRN", "")),  # no BPR after ST
        ("NM1*QC*1*DOE", "ZZZ*QC*1*DOE", (12, "ZZZ", "")),  # not an 835 segment
        ("PLB*1234567893*20251231*72*-25~", "PLB*1234567893*20251231*72*-25~\nCLP*PCN9*1*1*1~", (15, "CLP", "")),
    ],
)
def test_variants_name_segment_and_element(old, new, expected):
    text = (FIXTURES / "835_plb_interest_forward_balance.edi").read_text()
    text = text[: text.index("ST*835*0002")] + "GE*1*105~\nIEA*1*000000105~\n"  # the first, balanced transaction only
    text = text.replace("SE*13*0001~", f"SE*{13 - (new == '') + new.count(chr(10))}*0001~")
    assert old in text

    error = refuse(text.replace(old, new, 1))

    assert where(error) == expected


def test_a_999_is_not_an_835():
    error = refuse((FIXTURES / "999_accepted.edi").read_text())

    assert where(error) == (3, "ST", "ST01")
