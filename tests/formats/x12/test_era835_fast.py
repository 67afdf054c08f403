"""parse_835's fast reader against its reference reader: the same remittances, field for field.

parse_835 reads a file with the fast reader and, when that reader meets anything wrong (or
unusual enough), reads it again with the reference reader, whose errors the other tests pin. So
the fast reader must never return what the reference reader would not: the same objects, or no
result at all. "The same" is compared by equality (every field, and a field left unset raises)
and by repr, which also tells Decimal("5") from Decimal("5.00") and Decimal("-0.00") from ZERO.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from formats.x12 import era835
from formats.x12.era835 import parse_835
from formats.x12.errors import X12Error
from formats.x12.tokenizer import read_delimiters

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "x12"
VALID = sorted(FIXTURES.glob("835_*.edi"))
MALFORMED = sorted((FIXTURES / "malformed").glob("835_*.edi"))


def reference(data: str | bytes):
    """The reference reader's remittances, or the X12Error it raises (as a comparable tuple)."""
    try:
        return era835._read_reference(data)
    except X12Error as error:
        return ("X12Error", error.segment_number, error.segment_id, error.element, str(error))


def parsed(data: str | bytes):
    try:
        return parse_835(data)
    except X12Error as error:
        return ("X12Error", error.segment_number, error.segment_id, error.element, str(error))


def same(result, expected) -> bool:
    return result == expected and repr(result) == repr(expected)


def fast(data: str | bytes):
    """The fast reader's remittances, or None when it leaves the file to the reference reader."""
    try:
        return era835._read_fast(data)
    except (era835._Fallback, X12Error):
        return None


@pytest.mark.parametrize("path", VALID, ids=lambda path: path.stem)
def test_the_fast_reader_reads_every_valid_fixture_itself(path):
    text = path.read_text()

    assert fast(text) is not None
    assert same(fast(text), reference(text))


@pytest.mark.parametrize("path", VALID, ids=lambda path: path.stem)
def test_line_breaks_byte_order_mark_and_bytes_stay_on_the_fast_path(path):
    text = path.read_text()
    terminator = read_delimiters(text).segment
    variants = [
        text.replace("\n", "\r\n"),
        "\ufeff" + text,
        text.encode(),
        "".join(text.split("\n")) if terminator != "\n" else text,  # no line breaks at all
    ]
    for variant in variants:
        assert fast(variant) is not None
        assert same(fast(variant), reference(variant))


def test_several_interchanges_with_their_own_delimiters():
    files = [(FIXTURES / name).read_text() for name in ("835_pipe_delimiters.edi", "835_two_claims_paid.edi", "835_two_groups_three_transactions.edi")]
    text = "".join(files)

    remittances = fast(text)

    assert remittances is not None and len(remittances) == 5
    assert same(remittances, reference(text))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("~\nCLP*", "~\n CLP*"),  # a blank before a segment
        ("~\nCLP*", "~\n\tCLP*"),
        ("~\nCLP*", "~~\nCLP*"),  # an empty segment
        ("~\nSE*", "~\nSE*00"),  # SE01 with leading zeros (read as a number)
    ],
)
def test_unusual_but_valid_text_reads_the_same(old, new):
    text = (FIXTURES / "835_two_claims_paid.edi").read_text()
    assert old in text
    text = text.replace(old, new)

    assert not isinstance(reference(text), tuple)
    assert same(parsed(text), reference(text))


@pytest.mark.parametrize("path", [*MALFORMED, FIXTURES / "999_accepted.edi"], ids=lambda path: path.stem)
def test_malformed_files_are_left_to_the_reference_reader(path):
    text = path.read_text()

    assert fast(text) is None
    assert parsed(text) == reference(text)


ISA = "ISA*00*          *00*          *ZZ*ACMEHEALTH     *ZZ*SWITCHBOARD    *250314*1200*^*00501*000000501*0*P*:~"
BPR = "BPR*I*0*C*NON************20250314"
TRN = "TRN*1*EFT1*1512345678"
N1_PR, N1_PE = "N1*PR*ACME HEALTH PLAN", "N1*PE*SUNRISE HOME HEALTH*XX*1234567893"


@pytest.mark.parametrize(
    "body",
    [
        [],  # no BPR
        [BPR],  # no TRN
        [BPR, TRN],  # no payer
        [BPR, TRN, N1_PR],  # no payee
        [BPR, N1_PR, N1_PE],  # payer without TRN
        [BPR, TRN, N1_PR, N1_PE, "SVC*HC:G0299*42*30"],  # a line without a claim
        [BPR, TRN, N1_PR, N1_PE, "LX*1", "PLB*1234567893*20251231*WO*1", "CLP*A*1*1*1"],  # a claim after the summary
        [BPR, TRN, N1_PR, N1_PE, "CLP*A*1*1*1", "SVC*HC:G0299*1*1", "NM1*QC*1*DOE"],  # NM1 after the lines
        [BPR, TRN, N1_PR, N1_PE, "CLP*A*1*1*1", "BPR*I*0*C*NON"],  # a second BPR
    ],
)
def test_incomplete_transaction_sets_are_left_to_the_reference_reader(body):
    segments = ["ST*835*0001", *body, f"SE*{len(body) + 2}*0001"]
    text = ISA + "~".join(["GS*HP*A*B*20250314*1200*1*X*005010X221A1", *segments, "GE*1*1", "IEA*1*000000501"]) + "~"

    assert isinstance(reference(text), tuple)
    assert fast(text) is None
    assert parsed(text) == reference(text)


def edited(text: str, edit) -> list[str]:
    """Every variant of `text` that `edit(elements, index)` makes of one element of one segment."""
    delimiters = read_delimiters(text)
    segments = [raw.strip("\r\n") for raw in text.split(delimiters.segment)]
    variants = []
    for number, raw in enumerate(segments):
        elements = raw.split(delimiters.element)
        if number == 0 or len(elements) < 2:
            continue
        for index in range(1, len(elements)):
            changed = edit(list(elements), index)
            variants.append(delimiters.segment.join([*segments[:number], delimiters.element.join(changed), *segments[number + 1 :]]))
    return variants


@pytest.mark.parametrize("path", VALID, ids=lambda path: path.stem)
def test_every_element_emptied_dropped_or_spoiled_reads_as_the_reference_reader_reads_it(path):
    text = path.read_text()
    variants = (
        edited(text, lambda elements, index: [*elements[:index], "", *elements[index + 1 :]])
        + edited(text, lambda elements, index: elements[:index])
        + edited(text, lambda elements, index: [*elements[:index], elements[index] + "0.001", *elements[index + 1 :]])
        + edited(text, lambda elements, index: [*elements[:index], "x" + elements[index], *elements[index + 1 :]])
        + edited(text, lambda elements, index: [*elements[:index], "-0", *elements[index + 1 :]])
    )
    for variant in variants:
        expected = reference(variant)
        result = fast(variant)
        assert result is None or same(result, expected), variant
        assert same(parsed(variant), expected), variant


def test_the_caches_stay_within_their_size(monkeypatch):
    monkeypatch.setattr(era835, "_CACHE_SIZE", 3)
    for cache in (era835._AMOUNTS, era835._DATES):
        cache.clear()
    text = (FIXTURES / "835_two_claims_paid.edi").read_text()

    assert same(fast(text), reference(text))
    assert 0 < len(era835._AMOUNTS) <= 3
    assert 0 < len(era835._DATES) <= 3


# --- mutations ---------------------------------------------------------------------------------

# Values that are valid in some elements and wrong in others: amounts with and without cents, a
# fraction of a cent, exponents, signs, blanks, dates real and not, procedure composites, codes.
VALUES = [
    "", "0", "-0", "1", "12.5", "12.50", "12.505", ".5", "5.", "-3.25", "+3", "1E2", " 7", "7 ", "1,000", "١٢",
    "20250101", "20250230", "2025011", "472", "150", "151", "232", "233", "050", "405",
    "HC:99213", "HC:99213:25:59:::X", "HC", ":99213", "HC::25", "NU:0450", "AD:D1110",
    "QC", "IL", "74", "82", "TT", "CO", "PR", "OA", "45", "B6", "AU", "6R", "F8", "HE", "RX", "EV", "2U", "TJ", "MI", "1", "4", "22",
]
SEGMENT_IDS = ["CLP", "SVC", "CAS", "DTM", "REF", "AMT", "NM1", "LQ", "QTY", "MIA", "MOA", "LX", "PLB", "TRN", "N1", "SE", "ZZZ"]


def mutate(text: str, rng: random.Random) -> str:
    delimiters = read_delimiters(text)
    lines = text.split(delimiters.segment)
    segments = [line.strip("\r\n").split(delimiters.element) for line in lines if line.strip("\r\n")]
    for _ in range(rng.choice((1, 1, 2, 3))):
        index = rng.randrange(1, len(segments))
        segment = segments[index]
        kind = rng.randrange(9)
        if kind <= 3 and len(segment) > 1:  # another value in an element
            segment[rng.randrange(1, len(segment))] = "" if rng.random() < 0.2 else rng.choice(VALUES)
        elif kind == 4:  # an element more or fewer
            if rng.random() < 0.5 and len(segment) > 1:
                segment.pop()
            else:
                segment.append(rng.choice(VALUES))
        elif kind == 5:  # another segment id
            segment[0] = rng.choice(SEGMENT_IDS)
        elif kind == 6:  # a segment moved
            segments.insert(rng.randrange(1, len(segments)), segments.pop(index))
        elif kind == 7:  # a segment copied
            segments.insert(index, list(segment))
        else:  # a segment dropped
            del segments[index]
    line_break = rng.choice(("", "\n", "\r\n"))
    return "".join(delimiters.element.join(segment) + delimiters.segment + line_break for segment in segments)


def test_mutated_files_read_as_the_reference_reader_reads_them():
    rng = random.Random(835)
    sources = [path.read_text() for path in VALID]
    on_fast_path = 0
    for _ in range(3000):
        text = mutate(rng.choice(sources), rng)
        expected = reference(text)
        result = fast(text)
        if result is not None:
            on_fast_path += 1
            assert same(result, expected), text
        assert same(parsed(text), expected), text
    # Most mutations break the file; enough leave it valid for the fast reader to have read it.
    assert on_fast_path > 300
