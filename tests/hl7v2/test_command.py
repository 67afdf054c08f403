"""`manage.py mllp_listen`: binds, answers, stops on SIGINT."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import threading
import time

import pytest
from django.core.management import call_command

from connectors.hl7v2.models import Hl7Message
from formats.hl7v2 import frame
from tests.hl7v2.conftest import sample

pytestmark = pytest.mark.django_db(transaction=True)


def test_mllp_listen_serves_until_interrupted(tenant_a, monkeypatch):
    monkeypatch.setattr("connectors.hl7v2.management.commands.mllp_listen.ensure_inprocess_worker", lambda: None)
    out = io.StringIO()
    answers: list[bytes] = []

    def client():
        deadline = time.monotonic() + 10
        while not (found := re.search(r"listening on 127\.0\.0\.1:(\d+)", out.getvalue())) and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            with socket.create_connection(("127.0.0.1", int(found.group(1))), timeout=5) as sock:
                sock.sendall(frame(sample("adt_a01")))
                data = b""
                while not data.endswith(b"\x1c\r"):
                    data += sock.recv(65536)
                answers.append(data)
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        call_command("mllp_listen", "--tenant", "tenant-a", "--port", "0", stdout=out)
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    thread.join(5)

    assert b"MSA|AA|ADT00001" in answers[0]
    assert Hl7Message.objects.filter(control_id="ADT00001").exists()
    assert "MLLP listener stopped" in out.getvalue()
