"""formats.hl7v2: framing, encoding characters, batches, escapes, ACKs (checked with hl7apy)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hl7apy.parser import parse_message
from hypothesis import given, settings
from hypothesis import strategies as st

from formats.hl7v2 import (
    FrameReader,
    FrameTooLarge,
    Hl7Error,
    Message,
    build_ack,
    build_batch_ack,
    frame,
    parse_dtm,
    read_header,
    split_messages,
    unescape,
)
from formats.hl7v2.message import Encoding
from formats.hl7v2.mllp import Garbage, read_frames
from tests.hl7v2.conftest import sample

ADT = sample("adt_a01")


def test_frame_reader_yields_frames_split_anywhere_across_reads():
    data = frame("MSH|one\r") + frame("MSH|two\r")
    reader = FrameReader()
    out = []
    for i in range(len(data)):  # one byte at a time
        out.extend(reader.feed(data[i : i + 1]))
    assert out == [b"MSH|one\r", b"MSH|two\r"]
    assert not reader.pending


def test_frame_reader_discards_an_oversize_frame_and_stays_in_step():
    reader = FrameReader(max_size=100)
    out = list(reader.feed(b"\x0b" + b"A" * 250)) + list(reader.feed(b"A" * 250 + b"\x1c\r" + frame(b"MSH|ok\r")))
    assert isinstance(out[0], FrameTooLarge) and out[0].size == 500 and out[0].head.startswith(b"AAA")
    assert out[1] == b"MSH|ok\r"


def test_frame_reader_reports_garbage_and_half_frames():
    assert read_frames(b"\x00\xff junk" + frame(b"MSH|x\r")) == [Garbage(b"\x00\xff junk"), b"MSH|x\r"]
    half = read_frames(b"\x0bMSH|never finished")
    assert len(half) == 1 and isinstance(half[0], Garbage)
    assert read_frames(b"\x0bMSH|no cr\x1c") == [b"MSH|no cr"]  # a last frame without its <CR> is accepted


def test_header_read_with_default_characters():
    header = read_header(ADT)
    assert (header.sender, header.control_id, header.message_type, header.trigger, header.version) == (
        "EPICADT/GOODHEALTH", "ADT00001", "ADT", "A01", "2.5.1")


def test_header_and_fields_read_with_non_default_encoding_characters():
    text = "MSH$%@!#$LAB$HOSP$SB$HUB$20250101120000$$ADT%A08%ADT_A01$CTL!S!9$P$2.5.1\rPID$1$$M1%%%HOSP%MR$$Doe%Jane!F!%Q@Alias\r"
    header = read_header(text)
    assert header.encoding == Encoding("$", "%", "@", "!", "#")
    assert (header.trigger, header.control_id) == ("A08", "CTL%9")  # \S\ in the control id is the component character
    msg = Message(text)
    pid = msg.first("PID")
    assert msg.value(pid, 5, 1) == "Doe"
    assert msg.value(pid, 5, 2) == "Jane$"  # !F! is the field separator, escaped
    assert msg.repetitions(pid, 5) == ["Doe%Jane!F!%Q", "Alias"]


@pytest.mark.parametrize(("text", "where"), [
    ("PID|1||x\r", "MSH"),
    ("MSH|\r", "MSH-2"),
    ("MSHA^~\\&|x\r", "MSH-1"),
    ("MSH|^~\\&|A|B|C|D|2025||ADT^A01|  |P|2.5.1\r", "MSH-10"),
    ("MSH|^~\\&|A|B|C|D|2025||ADT^A01|1|P|\r", "MSH-12"),
    ("MSH|^~\\&|A|B|C|D|2025|||1|P|2.5\r", "MSH-9"),
    ("MSH|^~\\&|A|B|C|D|2025||ADT^A01|1|P|3.0\r", "MSH-12"),
])
def test_wrong_headers_name_the_field(text, where):
    with pytest.raises(Hl7Error) as caught:
        read_header(text)
    assert caught.value.where == where


def test_batch_is_split_into_its_messages_each_with_its_own_characters():
    second = "MSH$%@!#$LAB$HOSP$SB$HUB$2025$$ADT%A04$B2$P$2.5.1\rPID$1$$M2\r"
    batch = "FHS|^~\\&|LAB\nBHS|^~\\&|LAB\n" + ADT.replace("\r", "\n") + second + "BTS|2\rFTS|1\r"
    messages = split_messages(batch)
    assert [read_header(m).control_id for m in messages] == ["ADT00001", "B2"]
    assert messages[0] == ADT  # re-joined with <CR> whatever the file used


def test_unescape():
    enc = Encoding()
    assert unescape(r"a\F\b\S\c\T\d\R\e\E\f", enc) == "a|b^c&d~e\\f"
    assert unescape(r"line1\.br\line2", enc) == "line1\nline2"
    assert unescape("\\X48C3A9\\", enc) == "Hé"
    assert unescape("\\H\\bold\\N\\ and \\Zcustom\\ end\\ ", enc) == "bold and  end\\ "


def test_parse_dtm():
    chicago = timezone(timedelta(hours=-6))
    assert parse_dtm("20250315083000-0500") == datetime(2025, 3, 15, 8, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert parse_dtm("202503150830", chicago) == datetime(2025, 3, 15, 8, 30, tzinfo=chicago)
    assert parse_dtm("20250315083000.1234") == datetime(2025, 3, 15, 8, 30, 0, 123400, tzinfo=UTC)
    assert parse_dtm("") is None
    with pytest.raises(Hl7Error):
        parse_dtm("2025-03-15")


def test_ack_is_valid_hl7_and_answers_in_the_message_own_characters():
    ack = build_ack(read_header(ADT), "AA")
    parsed = parse_message(ack)
    assert parsed.msa.msa_1.value == "AA" and parsed.msa.msa_2.value == "ADT00001"
    assert parsed.msh.msh_9.to_er7() == "ACK^A01^ACK"
    odd = read_header("MSH$%@!#$LAB$HOSP$SB$HUB$2025$$ADT%A04$B!F!2$P$2.5.1\r")
    nack = build_ack(odd, "AE", "PID-3 missing $ bad", error_code="101", error_where="PID-3")
    assert nack.startswith("MSH$%@!#$SWITCHBOARD$")
    assert "MSA$AE$B!F!2$PID-3 missing !F! bad" in nack
    assert "ERR$$PID%3$101%Required field missing%HL70357$E" in nack


def test_reject_ack_parses_with_hl7apy_and_batch_ack_counts():
    nack = build_ack(None, "AR", "not HL7", error_code="100", control_id="")
    parsed = parse_message(nack)
    assert parsed.msa.msa_1.value == "AR"
    assert parsed.err.err_3.to_er7() == "100^Segment sequence error^HL70357"
    batch = build_batch_ack([nack, nack])
    assert batch.startswith("BHS|^~\\&|") and batch.endswith("BTS|2\r")


@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=64))
@settings(max_examples=300, deadline=None)
def test_any_bytes_in_any_chunks_give_frames_or_reports_and_headers_fail_only_with_hl7error(data, chunk):
    reader = FrameReader(max_size=500)
    items = []
    for i in range(0, len(data), chunk):
        items.extend(reader.feed(data[i : i + chunk]))
    items.extend(reader.finish())
    for item in items:
        assert isinstance(item, bytes | FrameTooLarge | Garbage)
        if isinstance(item, bytes):
            assert len(item) <= 500
            for text in split_messages(item.decode("latin-1")):
                try:
                    read_header(text)
                    Message(text)
                except Hl7Error:
                    pass


_HL7ISH = st.text(alphabet="MSHPIDADTSIUORMDTXAOBRCX|^~\\&#$%\r\n0123456789.-+\"", max_size=300)


_SEGMENTS = st.lists(st.tuples(st.sampled_from(["PID", "PV1", "MRG", "SCH", "AIS", "AIP", "OBR", "OBX", "TXA"]), _HL7ISH), max_size=6)


@given(_SEGMENTS, st.sampled_from(["ADT^A01", "ADT^A40", "SIU^S12", "ORU^R01", "MDM^T02"]))
@settings(max_examples=600, deadline=None)
def test_mapping_any_text_fails_only_with_named_errors(segments, kind):
    body = "".join(f"{sid}|{fields}\r" for sid, fields in segments)
    from zoneinfo import ZoneInfo

    from connectors.hl7v2.mapping import MappingError, map_message

    text = f"MSH|^~\\&|A|B|C|D|20250101||{kind}|1|P|2.5.1\r{body}"
    try:
        map_message(text, ZoneInfo("UTC"))
    except (MappingError, Hl7Error):
        pass
