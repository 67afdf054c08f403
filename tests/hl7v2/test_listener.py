"""The MLLP listener over real sockets: the hl7 package's `mllp_send` as an outside client, bad
input of every kind answered and survived, idle and slow connections closed, connections bounded."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from canonical.models import Encounter, Patient
from connectors.hl7v2 import services, tasks
from connectors.hl7v2.choices import MessageStatus
from connectors.hl7v2.listener import MllpServer
from connectors.hl7v2.models import Hl7Message
from connectors.models import FailedJob
from formats.hl7v2 import frame
from tests.hl7v2.conftest import sample

pytestmark = pytest.mark.django_db(transaction=True)

MLLP_SEND = Path(sys.executable).parent / "mllp_send"


@pytest.fixture
def listener(tenant_a):
    server = MllpServer(("127.0.0.1", 0), tenant=tenant_a, idle_timeout=1.0, frame_timeout=1.5, max_connections=3,
                        max_message_bytes=20_000)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.stop()
    thread.join(5)


def connect(server) -> socket.socket:
    sock = socket.create_connection(server.server_address, timeout=5)
    return sock


def read_frame(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\x1c\r"):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    assert data.startswith(b"\x0b")
    return data[1:-2].decode()


def exchange(sock: socket.socket, payload: bytes) -> str:
    sock.sendall(payload)
    return read_frame(sock)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_mllp_send_from_the_hl7_package_gets_aa_and_the_messages_are_applied(listener, tenant_a, tmp_path, enqueued):
    names = ["adt_a01", "adt_a04", "siu_s12", "oru_r01", "mdm_t02"]
    drop = tmp_path / "messages.hl7"
    drop.write_bytes(b"".join(frame(sample(name)) for name in names))

    run = subprocess.run([str(MLLP_SEND), "--file", str(drop), "--port", str(listener.server_address[1]), "127.0.0.1"],
                         capture_output=True, timeout=60, check=True)

    acks = [line for line in run.stdout.decode().replace("\r", "\n").split("\n") if line.startswith("MSA")]
    assert acks == ["MSA|AA|ADT00001", "MSA|AA|ADT00003", "MSA|AA|SIU00001", "MSA|AA|ORU00001", "MSA|AA|MDM00001"]
    # each new message was enqueued for mapping after its commit; a worker applies them (here, this
    # thread: SQLite's shared-cache test database cannot take a worker thread writing beside the listener)
    assert len(enqueued) == 5
    for message_id in services.pending_message_ids(tenant_a):
        tasks.apply_hl7_message.fn(message_id=message_id)
    assert set(Hl7Message.objects.values_list("status", flat=True)) == {MessageStatus.APPLIED}
    assert Patient.objects.filter(tenant=tenant_a).count() == 2
    assert Encounter.objects.get(tenant=tenant_a, external_id="V20250315001").notes.count() == 1


def test_the_ack_is_sent_only_after_the_message_is_committed(listener):
    with connect(listener) as sock:
        ack = exchange(sock, frame(sample("adt_a01")))
        # another connection (another database connection) sees the row as soon as the ACK is here
        assert "MSA|AA|ADT00001" in ack
        assert Hl7Message.objects.filter(control_id="ADT00001").exists()


def test_duplicates_get_aa_once_more_and_are_kept_once(listener):
    with connect(listener) as sock:
        exchange(sock, frame(sample("adt_a01")))
        again = exchange(sock, frame(sample("adt_a01")))
    assert "MSA|AA|ADT00001|duplicate" in again
    assert Hl7Message.objects.count() == 1


def test_bad_input_of_every_kind_is_answered_kept_for_triage_and_the_listener_keeps_serving(listener):
    with connect(listener) as sock:
        wrong_msh = exchange(sock, frame("MSH|^~\\&|A|B|C|D|2025||ADT^A01||P|2.5.1\rPID|1\r"))
        binary = exchange(sock, frame(bytes(b for b in range(256) if b not in (0x0B, 0x1C)) * 4))
        huge = exchange(sock, frame(b"MSH|^~\\&|" + b"X" * 50_000))
        outside = exchange(sock, b"\x00\xffnot mllp at all\r\n")
        good = exchange(sock, frame(sample("adt_a04")))

    assert "MSA|AR|" in wrong_msh
    assert "ERR||MSH^10|101^Required field missing" in wrong_msh
    assert "MSA|AR|" in binary and "MSA|AR|" in huge and "the limit is 20000" in huge
    assert "MSA|AR|" in outside
    assert "MSA|AA|ADT00003" in good
    assert Hl7Message.objects.filter(status=MessageStatus.REJECTED).count() == 4
    assert FailedJob.objects.filter(actor="recheck_hl7_message").count() == 4


def test_a_half_frame_then_close_is_kept_as_rejected_and_the_listener_still_serves(listener):
    with connect(listener) as sock:
        sock.sendall(b"\x0bMSH|^~\\&|A|B|C|D|2025||ADT^A01|HALF|P|2.5.1\rPID|1")
        sock.shutdown(socket.SHUT_WR)
        assert "MSA|AR|" in read_frame(sock)
    with connect(listener) as sock:
        assert "MSA|AA|" in exchange(sock, frame(sample("adt_a01")))


def test_idle_connections_are_closed(listener):
    with connect(listener) as sock:
        started = time.monotonic()
        assert closed_within(sock, 5)
        assert 0.8 < time.monotonic() - started < 4


def test_a_frame_trickled_too_slowly_is_cut_off(listener):
    with connect(listener) as sock:
        sock.sendall(b"\x0bMSH|^~\\&|")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 5:
            try:
                sock.sendall(b"X")
            except OSError:
                closed = True
                break
            if closed_within(sock, 0.5):
                closed = True
                break
        assert closed and time.monotonic() - started < 4


def test_connections_above_the_limit_are_refused(listener):
    held = [connect(listener) for _ in range(3)]
    try:
        time.sleep(0.2)
        with connect(listener) as extra:
            assert closed_within(extra, 2)
    finally:
        for sock in held:
            sock.close()


def test_random_bytes_with_framing_characters_never_take_the_listener_down(listener):
    import random

    noise = random.Random(8).randbytes(200_000)
    with connect(listener) as sock:
        sock.sendall(noise)
        sock.shutdown(socket.SHUT_WR)
        while not closed_within(sock, 5):  # read whatever answers come until the listener closes
            pass
    with connect(listener) as sock:
        assert "MSA|AA|ADT00001" in exchange(sock, frame(sample("adt_a01")))
