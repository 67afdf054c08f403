"""`manage.py ingest_hl7 FILE --tenant SLUG [--json]`: an SFTP drop of messages, applied like the listener's."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from canonical.models import Appointment, Patient
from connectors.hl7v2.choices import MessageStatus
from connectors.hl7v2.models import Hl7Message
from formats.hl7v2 import frame
from tests.hl7v2.conftest import sample

pytestmark = pytest.mark.django_db


def ingest(path, *args) -> str:
    out = io.StringIO()
    call_command("ingest_hl7", str(path), "--tenant", "tenant-a", *args, stdout=out)
    return out.getvalue()


def test_a_batch_file_with_newlines_is_kept_deduplicated_and_applied(tenant_a, tmp_path):
    drop = tmp_path / "drop.hl7"
    body = "".join(sample(n) for n in ("adt_a01", "siu_s12", "adt_a01")) + "MSH|^~\\&|X|Y|Z|W|2025||ORM^O01|Q1|P|2.5.1\r"
    drop.write_text(("FHS|^~\\&|SCHED\rBHS|^~\\&|SCHED\r" + body + "BTS|4\rFTS|1\r").replace("\r", "\r\n"))

    report = json.loads(ingest(drop, "--json"))

    assert report["counts"] == {"applied": 2, "duplicate": 1, "rejected": 1}
    assert [m["status"] for m in report["messages"]] == ["applied", "applied", "duplicate", "rejected"]
    assert report["messages"][3]["error"] == "MSH-9: message type ORM is not accepted here"
    assert Patient.objects.filter(tenant=tenant_a).count() == 1 and Appointment.objects.filter(tenant=tenant_a).count() == 1
    assert Hl7Message.objects.filter(status=MessageStatus.APPLIED).count() == 2

    again = ingest(drop)  # the same drop twice: nothing applied again
    assert again.strip() == "duplicate 3, rejected 1"


def test_an_mllp_framed_file_is_read_frame_by_frame(tenant_a, tmp_path):
    drop = tmp_path / "framed.mllp"
    drop.write_bytes(frame(sample("adt_a04")) + frame(sample("adt_a28")))
    assert ingest(drop).strip() == "applied 2"


def test_unknown_tenant_and_missing_file_are_refused(tenant_a, tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        ingest(tmp_path / "nope.hl7")
    with pytest.raises(CommandError, match="no active tenant"):
        call_command("ingest_hl7", str(tmp_path), "--tenant", "nobody")
