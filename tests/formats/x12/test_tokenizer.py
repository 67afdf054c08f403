"""The X12 tokenizer: delimiters from the ISA, line breaks, envelope checks, and a round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formats.x12.errors import X12Error
from formats.x12.segment import Segment
from formats.x12.tokenizer import Delimiters, components, read_delimiters, read_interchanges, serialize, tokenize

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "x12"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def assert_error(error: X12Error, number: int, segment_id: str, element: str) -> None:
    assert (error.segment_number, error.segment_id, error.element) == (number, segment_id, element)


# --- delimiters -----------------------------------------------------------------------------


def test_default_delimiters_are_read_from_the_isa():
    assert read_delimiters(fixture("835_two_claims_paid.edi")) == Delimiters(element="*", component=":", repetition="^", segment="~")


def test_non_default_delimiters_are_read_from_the_isa():
    assert read_delimiters(fixture("835_pipe_delimiters.edi")) == Delimiters(element="|", component=">", repetition="!", segment="\n")


def test_pre_5010_isa11_u_means_no_repetition_separator():
    isa = "ISA*00*          *00*          *ZZ*ACMEHEALTH     *ZZ*SWITCHBOARD    *250314*1200*U*00401*000000101*0*P*:~"

    delimiters = read_delimiters(isa)

    assert delimiters.repetition == ""
    assert delimiters.repetitions("A^B") == ["A^B"]


def test_segments_keep_their_numbers_and_split_into_elements():
    segments = tokenize(fixture("835_two_claims_paid.edi"))

    assert len(segments) == 50
    assert segments[0].number == 1 and segments[0].id == "ISA"
    clp = segments[17]
    assert clp == ["CLP", "PCN1001", "1", "250", "115", "90", "CI", "ACM2025031400001", "11", "1"]
    assert clp.number == 18
    assert segments[-1] == ["IEA", "1", "000000101"]


def test_components_split_with_the_interchange_component_separator():
    delimiters = read_delimiters(fixture("835_pipe_delimiters.edi"))

    assert components("HC>99213>25", delimiters) == ["HC", "99213", "25"]
    assert components("HC:99213", ":") == ["HC", "99213"]
    assert delimiters.components("HC>99213") == ["HC", "99213"]


def test_line_breaks_bom_and_single_line_files_give_the_same_segments():
    text = fixture("835_two_claims_paid.edi")
    expected = tokenize(text)

    assert tokenize(text.replace("\n", "")) == expected
    assert tokenize(text.replace("\n", "\r\n")) == expected
    assert tokenize("\ufeff" + text) == expected
    assert tokenize(("\ufeff" + text).encode("utf-8")) == expected
    assert [segment.number for segment in tokenize(text.replace("\n", ""))] == list(range(1, 51))


def test_newline_terminated_file_with_crlf_line_ends():
    text = fixture("835_pipe_delimiters.edi")

    segments = tokenize(text.replace("\n", "\r\n"))

    assert segments == tokenize(text)
    assert segments[11] == ["SVC", "HC>99213>25", "100", "80", "", "1"]


# --- refused headers --------------------------------------------------------------------------


def test_file_not_starting_with_isa_is_refused():
    with pytest.raises(X12Error) as caught:
        tokenize("GS*HP*ACMEHEALTH*SWITCHBOARD~")

    assert_error(caught.value, 1, "", "")
    assert "starts with ISA" in str(caught.value)


def test_empty_file_is_refused():
    with pytest.raises(X12Error, match="empty"):
        tokenize("\n \r\n")


def test_truncated_isa_is_refused_naming_the_element():
    with pytest.raises(X12Error) as caught:
        tokenize(fixture("malformed/835_truncated_isa.edi"))

    assert_error(caught.value, 1, "ISA", "ISA08")
    assert "truncated" in caught.value.reason


def test_isa_with_a_short_element_is_refused_naming_the_element():
    # ISA06 padded to 12 characters instead of 15: everything after it shifts.
    text = fixture("835_two_claims_paid.edi").replace("ACMEHEALTH     ", "ACMEHEALTH  ", 1)

    with pytest.raises(X12Error) as caught:
        tokenize(text)

    assert_error(caught.value, 1, "ISA", "ISA06")
    assert "15 characters" in caught.value.reason


# --- envelope -------------------------------------------------------------------------------


def test_interchange_with_two_groups_and_three_transactions():
    (interchange,) = read_interchanges(fixture("835_two_groups_three_transactions.edi"))

    assert interchange.control_number == "000000103"
    assert interchange.sender_id == "ACMEHEALTH"
    assert interchange.receiver_id == "SWITCHBOARD"
    assert interchange.usage == "P"
    assert [group.control_number for group in interchange.groups] == ["201", "202"]
    assert [group.sender for group in interchange.groups] == ["ACMEHEALTH", "BLUEPLAN"]
    assert [[t.control_number for t in group.transactions] for group in interchange.groups] == [["0001", "0002"], ["0001"]]
    first = interchange.groups[0].transactions[0]
    assert first.transaction_set == "835"
    assert first.implementation == "005010X221A1"
    assert first.header.number == 3 and first.trailer.number == 12
    assert [segment.id for segment in first.body][:2] == ["BPR", "TRN"]


def test_two_interchanges_in_one_file_each_with_its_own_delimiters():
    text = fixture("835_two_claims_paid.edi") + fixture("835_pipe_delimiters.edi")

    first, second = read_interchanges(text)

    assert first.delimiters.element == "*" and second.delimiters.element == "|"
    assert second.header.number == 51  # numbering runs through the file
    assert tokenize(text)[50].id == "ISA"


def test_text_after_the_last_iea_is_refused():
    text = fixture("835_cas_six_triples.edi") + "TRAILING NOISE~"

    with pytest.raises(X12Error) as caught:
        tokenize(text)

    assert_error(caught.value, 16, "", "")
    assert "after IEA" in caught.value.reason


def test_se_count_that_does_not_match_is_refused():
    with pytest.raises(X12Error) as caught:
        read_interchanges(fixture("malformed/835_se_count_wrong.edi"))

    assert_error(caught.value, 11, "SE", "SE01")
    assert "12" in caught.value.reason and "9" in caught.value.reason


@pytest.mark.parametrize(
    ("old", "new", "number", "segment_id", "element"),
    [
        ("SE*10*0001~", "SE*10*0009~", 12, "SE", "SE02"),
        ("SE*10*0001~", "SE*ten*0001~", 12, "SE", "SE01"),
        ("GE*2*201~", "GE*3*201~", 26, "GE", "GE01"),
        ("GE*2*201~", "GE*2*299~", 26, "GE", "GE02"),
        ("IEA*2*000000103~", "IEA*1*000000103~", 41, "IEA", "IEA01"),
        ("IEA*2*000000103~", "IEA*2*000000999~", 41, "IEA", "IEA02"),
        ("SE*10*0001~\n", "", 12, "ST", ""),  # ST while the previous transaction set is open
        ("GE*2*201~\n", "", 26, "GS", ""),  # GS while the previous group is open
        ("IEA*2*000000103~\n", "", 40, "GE", ""),  # the file ends without IEA
    ],
)
def test_envelope_errors_name_segment_and_element(old, new, number, segment_id, element):
    text = fixture("835_two_groups_three_transactions.edi")
    assert old in text

    with pytest.raises(X12Error) as caught:
        read_interchanges(text.replace(old, new, 1))

    assert_error(caught.value, number, segment_id, element)


def test_segment_outside_a_transaction_set_is_refused():
    text = fixture("835_cas_six_triples.edi").replace("GE*1*107~", "NM1*QC*1*STRAY~\nGE*1*107~")

    with pytest.raises(X12Error) as caught:
        read_interchanges(text)

    assert_error(caught.value, 14, "NM1", "")


def test_error_message_names_segment_number_id_and_element():
    error = X12Error("'12.3.4' is not a number", segment_number=14, segment_id="CLP", element="CLP04")

    assert str(error) == "segment 14 (CLP), element CLP04: '12.3.4' is not a number"
    assert isinstance(error, ValueError)


# --- property-based round trip ---------------------------------------------------------------

# Characters that may serve as delimiters; the segment terminator may also be a newline.
DELIMITER_CHARACTERS = "*|^:>!~+`#%&@\\;,{}[]<=?\x1c\x1d\x1e\x1f"


@st.composite
def delimiter_sets(draw) -> Delimiters:
    element, component, repetition, segment = draw(
        st.lists(st.sampled_from(DELIMITER_CHARACTERS), min_size=4, max_size=4, unique=True)
    )
    if draw(st.booleans()):
        segment = "\n"
    return Delimiters(element=element, component=component, repetition=repetition, segment=segment)


def _isa(delimiters: Delimiters) -> list[str]:
    return ["ISA", "00", " " * 10, "00", " " * 10, "ZZ", "SENDER".ljust(15), "ZZ", "RECEIVER".ljust(15),
            "250314", "1200", delimiters.repetition, "00501", "000000001", "0", "T", delimiters.component]


@st.composite
def interchanges(draw) -> tuple[Delimiters, list[list[str]]]:
    delimiters = draw(delimiter_sets())
    # Element content: any printable text except the delimiters and line breaks (which frame segments).
    forbidden = {delimiters.element, delimiters.segment, "\r", "\n"}
    text = st.text(
        alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="".join(forbidden)),
        max_size=12,
    )
    segment_id = st.from_regex(r"[A-Z][A-Z0-9]{1,2}", fullmatch=True).filter(lambda value: value not in ("ISA", "IEA"))
    body = draw(
        st.lists(st.tuples(segment_id, st.lists(text, max_size=8)).map(lambda pair: [pair[0], *pair[1]]), max_size=15)
    )
    return delimiters, [_isa(delimiters), *body, ["IEA", "1", "000000001"]]


@settings(max_examples=150, deadline=None)
@given(interchanges(), st.booleans())
def test_tokenize_inverts_serialize_for_any_delimiters(interchange, line_breaks):
    delimiters, segments = interchange
    line_break = "\r\n" if line_breaks and delimiters.segment != "\n" else ""

    text = serialize(segments, delimiters, line_break=line_break)
    tokens = tokenize(text)

    assert read_delimiters(text) == delimiters
    assert tokens == segments
    assert [segment.number for segment in tokens] == list(range(1, len(segments) + 1))
    assert all(isinstance(segment, Segment) for segment in tokens)


def test_serialize_refuses_an_element_holding_a_delimiter():
    with pytest.raises(ValueError, match="delimiter"):
        serialize([["NM1", "O*BRIEN"]], Delimiters())
