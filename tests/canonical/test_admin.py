"""The canonical admin: view-only pages for every kind, with history, source payloads and audited reads."""

from datetime import UTC, date, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext

from canonical.codes import CodeMapper
from canonical.models import (
    Appointment,
    Assessment,
    Authorization,
    Caregiver,
    CarePlan,
    ChangeEvent,
    Coverage,
    Encounter,
    Location,
    MasterPatient,
    MatchReview,
    Patient,
    Practitioner,
    Referral,
    Shift,
    SourceRecord,
    UnmappedCode,
)
from canonical.selectors import authorization_usage, with_usage
from canonical.sources import Payload, mark_failed, store_payloads
from canonical.upsert import delete_records, upsert_records
from tenants.models import AuditEvent
from tests.factories import ConnectionFactory

START = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)

RECORD_MODELS = [Patient, Practitioner, Location, Caregiver, Coverage, Authorization, Appointment, Encounter, CarePlan, Referral, Assessment, Shift]


def upsert(kind, records, *, tenant, connection):
    result = upsert_records(kind, records, tenant=tenant, connection=connection)
    assert result.rejected == []
    return result


def patient(external_id, family_name="Rivera", **overrides):
    record = {
        "external_id": external_id, "family_name": family_name, "given_names": ["Ana"], "birth_date": date(1948, 3, 2),
        "sex": "female", "identifiers": [{"system": "urn:mrn:wellsky", "value": f"MRN-{external_id}"}],
    }
    record.update(overrides)
    return record


def appointment(external_id, status, units, authorization="auth1", **overrides):
    record = {
        "external_id": external_id, "patient": "p1", "authorization": authorization, "start": START, "end": START.replace(hour=15),
        "status": status, "service_code": "T1019", "units": Decimal(units),
    }
    record.update(overrides)
    return record


@pytest.fixture
def world(tenant_a, tenant_b):
    """One record of every kind in tenant A's WellSky connection, a patient in tenant B."""
    conn = ConnectionFactory(tenant=tenant_a, display_name="WellSky North")
    other = ConnectionFactory(tenant=tenant_a, display_name="WellSky South")
    conn_b = ConnectionFactory(tenant=tenant_b, display_name="WellSky B")
    a = {"tenant": tenant_a, "connection": conn}
    upsert("patient", [patient("p1"), patient("p2", "Okafor", given_names=["Chidi"], sex="male")], **a)
    upsert("patient", [patient("p9", "Rivers")], tenant=tenant_a, connection=other)
    upsert("patient", [patient("p1", "Byrne")], tenant=tenant_b, connection=conn_b)
    upsert("practitioner", [{"external_id": "dr1", "family_name": "Lee", "given_names": ["Dana"], "npi": "1234567893"}], **a)
    upsert("location", [{"external_id": "loc1", "name": "North Branch", "city": "Dayton"}], **a)
    upsert("caregiver", [{"external_id": "cg1", "family_name": "Mensah", "given_names": ["Kofi"], "discipline": "HHA"}], **a)
    upsert("coverage", [{"external_id": "cov1", "patient": "p1", "payer": "Ohio Medicaid", "member_id": "M-778"}], **a)
    upsert("authorization", [
        {"external_id": "auth1", "patient": "p1", "payer": "Ohio Medicaid", "auth_number": "PA-2026-0042", "service_codes": ["T1019"],
         "units_allowed": Decimal("20"), "start_date": date(2026, 11, 1), "end_date": date(2026, 12, 31)},
        {"external_id": "auth2", "patient": "p1", "payer": "Ohio Medicaid", "auth_number": "PA-2026-0077", "service_codes": ["T1019"],
         "units_allowed": Decimal("5"), "start_date": date(2026, 11, 1), "end_date": date(2026, 12, 31)},
    ], **a)
    upsert("appointment", [
        appointment("a1", "booked", "4", practitioner="dr1", location="loc1"),
        appointment("a2", "fulfilled", "2.5"),
        appointment("a3", "cancelled", "3"),
        appointment("a4", "booked", "5"),
        appointment("a5", "noshow", "1"),
        appointment("a6", "booked", "7", authorization="auth2"),
    ], **a)
    assert delete_records("appointment", ["a4"], **a).deleted == 1
    upsert("encounter", [{
        "external_id": "e1", "patient": "p1", "practitioner": "dr1", "appointment": "a1", "period_start": START, "status": "finished",
        "diagnoses": [{"code": "E11.9", "display": "Type 2 diabetes", "rank": 1}],
        "procedures": [{"system": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "code": "G0299", "modifiers": ["GT"], "units": Decimal("1")}],
        "vitals": [{"loinc": "8480-6", "value": Decimal("132"), "unit": "mm[Hg]", "display": "Systolic"}],
        "notes": [{"author": "RN Lee", "text": "Visit went well.", "status": "amended", "signed_at": START, "signed_by": "RN Lee", "locked": True,
                   "amendments": [{"reason_code": "LATE-ENTRY", "text": "Added BP", "amended_by": "RN Lee", "amended_at": "2026-11-24T09:00:00+00:00"}]}],
    }], **a)
    upsert("care_plan", [{"external_id": "cp1", "patient": "p1", "title": "Home safety", "goals": [{"description": "No falls"}]}], **a)
    upsert("referral", [{"external_id": "ref1", "patient": "p1", "source": "Dayton General", "reason": "Post-discharge care"}], **a)
    upsert("assessment", [{"external_id": "as1", "patient": "p1", "instrument": "PHQ-9", "answers": [{"question": "q1", "answer": "1"}], "score": Decimal("5")}], **a)
    upsert("shift", [{
        "external_id": "sh1", "client": "p1", "caregiver": "cg1", "start": START, "end": START.replace(hour=18), "status": "assigned",
        "offers": [{"caregiver": "cg1", "response": "accepted", "offered_at": START.replace(hour=8)}],
    }], **a)
    return SimpleNamespace(tenant=tenant_a, tenant_b=tenant_b, conn=conn, other=other, conn_b=conn_b)


def url(model, suffix="", pk=None):
    base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    return base + (f"{pk}/{suffix}" if pk is not None else suffix)


def listed(response) -> list:
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def listed_ids(response) -> list[str]:
    return sorted(obj.external_id for obj in listed(response))


def reads_of(obj) -> int:
    return AuditEvent.objects.filter(action="read", object_type=obj._meta.label_lower, object_id=str(obj.public_id)).count()


# --- every page loads -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_every_changelist_and_change_page_loads(admin_client, world):
    store_payloads([Payload("patients", "p1", '{"id": "p1"}')], tenant=world.tenant, connection=world.conn)
    mapper = CodeMapper(world.tenant)
    mapper.code("service_code", "wellsky", "PCS-9")
    mapper.flush()
    p1, p2 = Patient.objects.filter(tenant=world.tenant, source_connection=world.conn).order_by("external_id")
    master = MasterPatient.objects.create(tenant=world.tenant)
    Patient.objects.filter(pk=p1.pk).update(master=master)
    MatchReview.objects.create(tenant=world.tenant, patient=p1, candidate=p2, score=Decimal("0.810"), reasons=["birth_date"])
    models = [*RECORD_MODELS, SourceRecord, ChangeEvent, UnmappedCode, MasterPatient, MatchReview]
    for model in models:
        assert admin_client.get(url(model)).status_code == 200, model
        obj = model.objects.order_by("pk").first()
        assert obj is not None, model
        page = admin_client.get(url(model, "change/", obj.pk))
        assert page.status_code == 200, model
        assert b'name="_save"' not in page.content, model


@pytest.mark.django_db
def test_changelists_make_the_same_number_of_queries_for_one_row_or_many(admin_client, world):
    """list_select_related and annotations, not a query per row (and no COUNT-heavy columns)."""
    pages = [url(model) for model in RECORD_MODELS]

    def queries() -> dict[str, int]:
        counts = {}
        for page in pages:
            with CaptureQueriesContext(db_connection) as captured:
                assert admin_client.get(page).status_code == 200
            counts[page] = len(captured)
        return counts

    before = queries()
    for n in range(2, 6):
        conn = ConnectionFactory(tenant=world.tenant)
        a = {"tenant": world.tenant, "connection": conn}
        upsert("patient", [patient("p1")], **a)
        upsert("practitioner", [{"external_id": "dr1", "family_name": f"Lee{n}", "npi": "1234567893"}], **a)
        upsert("location", [{"external_id": "loc1", "name": f"Branch {n}"}], **a)
        upsert("caregiver", [{"external_id": "cg1", "family_name": "Mensah"}], **a)
        upsert("coverage", [{"external_id": "cov1", "patient": "p1", "payer": "Ohio Medicaid", "member_id": f"M-{n}"}], **a)
        upsert("authorization", [{"external_id": "auth1", "patient": "p1", "payer": "X", "auth_number": f"PA-{n}",
                                  "units_allowed": Decimal("9"), "start_date": date(2026, 11, 1), "end_date": date(2026, 12, 1)}], **a)
        upsert("appointment", [appointment("a1", "booked", "1", practitioner="dr1")], **a)
        upsert("encounter", [{"external_id": "e1", "patient": "p1", "practitioner": "dr1", "period_start": START}], **a)
        upsert("care_plan", [{"external_id": "cp1", "patient": "p1"}], **a)
        upsert("referral", [{"external_id": "ref1", "patient": "p1", "source": "Clinic"}], **a)
        upsert("assessment", [{"external_id": "as1", "patient": "p1", "instrument": "PHQ-9", "answers": []}], **a)
        upsert("shift", [{"external_id": "sh1", "client": "p1", "caregiver": "cg1", "start": START, "end": START}], **a)
    assert Appointment.objects.count() == 10
    assert queries() == before


# --- view-only ----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_add_delete_and_change_are_refused_and_change_nothing(admin_client, world):
    p1 = Patient.objects.get(tenant=world.tenant, source_connection=world.conn, external_id="p1")
    before = (p1.family_name, p1.version, p1.updated_at, p1.content_hash)
    for model in RECORD_MODELS:
        assert admin_client.get(url(model, "add/")).status_code == 403, model
    assert admin_client.get(url(Patient, "delete/", p1.pk)).status_code == 403
    assert admin_client.post(url(Patient, "delete/", p1.pk), {"post": "yes"}).status_code == 403
    response = admin_client.post(url(Patient, "change/", p1.pk), {"family_name": "Changed", "sex": "male", "external_id": "p1"})
    assert response.status_code == 403
    bulk = admin_client.post(url(Patient), {"action": "delete_selected", "_selected_action": [p1.pk], "post": "yes"})
    assert bulk.status_code == 200  # no such action offered: the list comes back, nothing deleted
    p1.refresh_from_db()
    assert (p1.family_name, p1.version, p1.updated_at, p1.content_hash) == before
    assert Patient.objects.filter(pk=p1.pk).exists()
    for model in (SourceRecord, ChangeEvent, UnmappedCode, MasterPatient, MatchReview):
        assert admin_client.get(url(model, "add/")).status_code == 403, model


@pytest.mark.django_db
def test_each_change_view_get_writes_one_read_audit_event(admin_client, world, superuser):
    p1 = Patient.objects.get(tenant=world.tenant, source_connection=world.conn, external_id="p1")
    encounter = Encounter.objects.get()
    assert reads_of(p1) == 0
    admin_client.get(url(Patient, "change/", p1.pk))
    admin_client.get(url(Patient, "change/", p1.pk))
    admin_client.get(url(Encounter, "change/", encounter.pk))
    admin_client.post(url(Patient, "change/", p1.pk), {"family_name": "x"})  # refused, and not a read
    assert reads_of(p1) == 2
    assert reads_of(encounter) == 1
    event = AuditEvent.objects.filter(object_id=str(p1.public_id)).first()
    assert (event.tenant_id, event.actor_user_id, event.actor_label, event.detail) == (world.tenant.pk, superuser.pk, "staff:root", {})


@pytest.mark.django_db
def test_every_record_admin_audits_reads(admin_client, world):
    for model in RECORD_MODELS:
        obj = model.objects.filter(tenant=world.tenant).order_by("pk").first()
        assert admin_client.get(url(model, "change/", obj.pk)).status_code == 200
        assert reads_of(obj) == 1, model


# --- search and filters -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_search_by_name_identifier_external_id_and_public_id(admin_client, world):
    p2 = Patient.objects.get(external_id="p2")
    assert listed_ids(admin_client.get(url(Patient), {"q": "okafor"})) == ["p2"]
    assert listed_ids(admin_client.get(url(Patient), {"q": "Chidi"})) == ["p2"]
    assert listed_ids(admin_client.get(url(Patient), {"q": "Ana Rivera"})) == ["p1"]
    assert listed_ids(admin_client.get(url(Patient), {"q": "MRN-p2"})) == ["p2"]
    assert listed_ids(admin_client.get(url(Patient), {"q": "p1"})) == ["p1", "p1"]  # tenant A and tenant B
    assert listed_ids(admin_client.get(url(Patient), {"q": str(p2.public_id)})) == ["p2"]
    assert listed_ids(admin_client.get(url(Patient), {"q": "nobody"})) == []
    assert listed_ids(admin_client.get(url(Practitioner), {"q": "1234567893"})) == ["dr1"]
    assert listed_ids(admin_client.get(url(Authorization), {"q": "PA-2026-0077"})) == ["auth2"]
    assert listed_ids(admin_client.get(url(Coverage), {"q": "M-778"})) == ["cov1"]
    assert listed_ids(admin_client.get(url(Appointment), {"q": "PA-2026-0077"})) == ["a6"]
    assert listed_ids(admin_client.get(url(Shift), {"q": "Mensah"})) == ["sh1"]
    assert listed_ids(admin_client.get(url(Location), {"q": "north"})) == ["loc1"]


@pytest.mark.django_db
def test_filters_by_tenant_source_connection_status_and_tombstone(admin_client, world):
    assert listed_ids(admin_client.get(url(Patient), {"tenant__id__exact": world.tenant_b.pk})) == ["p1"]
    assert listed(admin_client.get(url(Patient), {"tenant__id__exact": world.tenant_b.pk}))[0].family_name == "Byrne"
    assert listed_ids(admin_client.get(url(Patient), {"tenant__id__exact": world.tenant.pk})) == ["p1", "p2", "p9"]
    assert listed_ids(admin_client.get(url(Patient), {"source_connection__id__exact": world.other.pk})) == ["p9"]
    assert listed_ids(admin_client.get(url(Patient), {"sex__exact": "male"})) == ["p2"]
    assert listed_ids(admin_client.get(url(Appointment), {"status__exact": "cancelled"})) == ["a3"]
    assert listed_ids(admin_client.get(url(Appointment), {"deleted": "yes"})) == ["a4"]
    assert listed_ids(admin_client.get(url(Appointment), {"deleted": "no"})) == ["a1", "a2", "a3", "a5", "a6"]
    assert listed_ids(admin_client.get(url(Appointment))) == ["a1", "a2", "a3", "a4", "a5", "a6"]


# --- the record's page: children, history, payloads -------------------------------------------------

@pytest.mark.django_db
def test_children_are_shown_read_only(admin_client, world):
    p1 = Patient.objects.get(tenant=world.tenant, source_connection=world.conn, external_id="p1")
    page = admin_client.get(url(Patient, "change/", p1.pk)).content.decode()
    assert "MRN-p1" in page and "urn:mrn:wellsky" in page
    encounter = admin_client.get(url(Encounter, "change/", Encounter.objects.get().pk)).content.decode()
    for text in ("E11.9", "Type 2 diabetes", "G0299", "8480-6", "132.0000", "mm[Hg]", "Visit went well."):
        assert text in encounter, text
    assert "signed by RN Lee at 2026-11-23T14:00+00:00 · locked" in encounter
    assert "<li><strong>LATE-ENTRY</strong> by RN Lee at 2026-11-24T09:00:00+00:00: Added BP</li>" in encounter
    assert 'name="diagnoses-0-code"' not in encounter  # rows are text, not inputs
    shift = admin_client.get(url(Shift, "change/", Shift.objects.get().pk)).content.decode()
    assert '<p><a href="/admin/canonical/caregiver/' in shift and "Kofi Mensah</a></p>" in shift and "<p>Accepted</p>" in shift


@pytest.mark.django_db
def test_history_of_versions_is_on_the_page(admin_client, world):
    p1 = Patient.objects.get(tenant=world.tenant, source_connection=world.conn, external_id="p1")
    upsert("patient", [patient("p1", phone="555-0199")], tenant=world.tenant, connection=world.conn)
    events = list(ChangeEvent.objects.filter(record_id=p1.public_id).order_by("cursor"))
    assert [(e.action, e.version) for e in events] == [("create", 1), ("update", 2)]
    page = admin_client.get(url(Patient, "change/", p1.pk))
    history = page.context["adminform"].form.instance  # the page is about p1
    assert history.pk == p1.pk
    content = page.content.decode()
    for event in events:
        row = (
            f'<td><a href="/admin/canonical/changeevent/{event.pk}/change/">{event.cursor}</a></td>\n'
            f"      <td>{event.action}</td>\n      <td>{event.version}</td>"
        )
        assert row in content
    deleted = Appointment.objects.get(external_id="a4")
    appointment_page = admin_client.get(url(Appointment, "change/", deleted.pk)).content.decode()
    assert "<td>delete</td>\n      <td>2</td>" in appointment_page


@pytest.mark.django_db
def test_source_payloads_are_pretty_printed_and_escaped(admin_client, world):
    body = '{"id": "p1", "name": "<script>alert(1)</script>"}'
    (kept,) = store_payloads([Payload("patients", "p1", body)], tenant=world.tenant, connection=world.conn)
    mark_failed([kept], error="birthDate: <b>not</b> a date", path="birthDate")
    store_payloads([Payload("patients", "p1", '{"id": "p1"}')], tenant=world.tenant_b, connection=world.conn_b)  # another tenant
    p1 = Patient.objects.get(tenant=world.tenant, source_connection=world.conn, external_id="p1")
    content = admin_client.get(url(Patient, "change/", p1.pk)).content.decode()
    assert '{\n  &quot;id&quot;: &quot;p1&quot;,\n  &quot;name&quot;: &quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;\n}' in content
    assert "<script>alert(1)" not in content
    assert "birthDate: &lt;b&gt;not&lt;/b&gt; a date (at birthDate)" in content
    assert f'href="/admin/canonical/sourcerecord/{kept}/change/"' in content
    assert content.count('<div class="source-payload">') == 1
    p2 = Patient.objects.get(external_id="p2")
    assert "No source payload kept for this external id." in admin_client.get(url(Patient, "change/", p2.pk)).content.decode()


@pytest.mark.django_db
def test_a_very_large_payload_is_truncated_with_a_note(admin_client, world):
    body = '{"note": "' + "x" * 30_000 + '"}'
    (kept,) = store_payloads([Payload("patients", "p1", body)], tenant=world.tenant, connection=world.conn)
    p1 = Patient.objects.get(tenant=world.tenant, source_connection=world.conn, external_id="p1")
    content = admin_client.get(url(Patient, "change/", p1.pk)).content.decode()
    assert "Truncated: showing the first 20000 of 30016 characters." in content
    assert "x" * 19_987 in content and "x" * 19_988 not in content
    source_page = admin_client.get(url(SourceRecord, "change/", kept)).content.decode()
    assert "Truncated: showing the first 20000 of 30016 characters." in source_page


# --- authorization usage ------------------------------------------------------------------------------

@pytest.mark.django_db
def test_authorization_usage_counts_booked_and_fulfilled_only(world):
    auth1 = Authorization.objects.get(external_id="auth1")
    auth2 = Authorization.objects.get(external_id="auth2")
    # a1 booked 4 + a2 fulfilled 2.5; not a3 cancelled 3, a4 booked 5 but tombstoned, a5 no-show 1, a6 (other auth)
    assert authorization_usage(auth1) == (Decimal("6.50"), Decimal("13.50"))
    assert authorization_usage(auth2) == (Decimal("7.00"), Decimal("-2.00"))  # overbooked
    upsert("authorization", [{"external_id": "auth3", "patient": "p1", "payer": "X", "auth_number": "PA-3", "units_allowed": Decimal("8"),
                              "start_date": date(2026, 11, 1), "end_date": date(2026, 12, 1)}], tenant=world.tenant, connection=world.conn)
    auth3 = Authorization.objects.get(external_id="auth3")
    assert authorization_usage(auth3) == (Decimal("0.00"), Decimal("8.00"))


@pytest.mark.django_db
def test_with_usage_annotates_the_same_numbers_in_one_query(world):
    with CaptureQueriesContext(db_connection) as captured:
        annotated = {a.external_id: (a.units_used, a.units_remaining) for a in with_usage(Authorization.objects.all())}
    assert len(captured) == 1
    assert annotated == {a.external_id: authorization_usage(a) for a in Authorization.objects.all()}
    assert annotated == {"auth1": (Decimal("6.50"), Decimal("13.50")), "auth2": (Decimal("7.00"), Decimal("-2.00"))}
    by_remaining = [a.external_id for a in with_usage(Authorization.objects.all()).order_by("units_remaining")]
    assert by_remaining == ["auth2", "auth1"]


@pytest.mark.django_db
def test_authorization_pages_show_units_used_and_remaining(admin_client, world):
    auth1 = Authorization.objects.get(external_id="auth1")
    rows = {a.external_id: (a.units_used, a.units_remaining) for a in listed(admin_client.get(url(Authorization)))}
    assert rows == {"auth1": (Decimal("6.50"), Decimal("13.50")), "auth2": (Decimal("7.00"), Decimal("-2.00"))}
    page = admin_client.get(url(Authorization, "change/", auth1.pk)).content.decode()
    assert '<div class="readonly">6.50</div>' in page
    assert '<div class="readonly">13.50</div>' in page


# --- source records, change events, unmapped codes ---------------------------------------------------

@pytest.mark.django_db
def test_source_record_admin_filters_searches_and_shows_the_error(admin_client, world):
    ok, bad = store_payloads(
        [Payload("patients", "p1", '{"id": "p1"}'), Payload("visits", "a1", '{"id": "a1", "start": "soon"}')],
        tenant=world.tenant, connection=world.conn,
    )
    mark_failed([bad], error="start: 'soon' is not a date-time", path="start")
    store_payloads([Payload("patients", "p1", '{"id": "p1", "b": 1}')], tenant=world.tenant_b, connection=world.conn_b)
    assert [r.pk for r in listed(admin_client.get(url(SourceRecord), {"status__exact": "failed"}))] == [bad]
    assert [r.pk for r in listed(admin_client.get(url(SourceRecord), {"resource_type": "visits"}))] == [bad]
    assert sorted(r.pk for r in listed(admin_client.get(url(SourceRecord), {"q": "p1"}))) == sorted(
        SourceRecord.objects.filter(external_id="p1").values_list("pk", flat=True)
    )
    assert [r.pk for r in listed(admin_client.get(url(SourceRecord), {"q": "p1", "tenant__id__exact": world.tenant.pk}))] == [ok]
    assert [r.pk for r in listed(admin_client.get(url(SourceRecord), {"connection__id__exact": world.conn.pk}))] == [bad, ok]
    page = admin_client.get(url(SourceRecord, "change/", bad))
    content = page.content.decode()
    assert "start: &#x27;soon&#x27; is not a date-time" in content
    assert '<div class="readonly">start</div>' in content
    appointment = Appointment.objects.get(external_id="a1")
    assert f'<a href="/admin/canonical/appointment/{appointment.pk}/change/">appointment a1</a>' in content
    assert AuditEvent.objects.filter(action="read", object_type="canonical.sourcerecord", object_id=str(bad)).count() == 1
    assert admin_client.post(url(SourceRecord, "change/", bad), {"status": "normalized"}).status_code == 403
    assert SourceRecord.objects.get(pk=bad).status == "failed"


@pytest.mark.django_db
def test_change_event_admin_filters_and_finds_a_records_events(admin_client, world):
    deleted = Appointment.objects.get(external_id="a4")
    rows = listed(admin_client.get(url(ChangeEvent), {"action__exact": "delete"}))
    assert [(e.resource_type, e.record_id) for e in rows] == [("appointment", deleted.public_id)]
    encounters = listed(admin_client.get(url(ChangeEvent), {"resource_type": "encounter"}))
    assert [e.record_id for e in encounters] == [Encounter.objects.get().public_id]
    assert len(listed(admin_client.get(url(ChangeEvent), {"tenant__id__exact": world.tenant_b.pk}))) == 1
    found = listed(admin_client.get(url(ChangeEvent), {"q": str(deleted.public_id)}))
    assert [(e.action, e.version) for e in found] == [("delete", 2), ("create", 1)]
    assert listed(admin_client.get(url(ChangeEvent), {"q": "not-a-uuid"})) == []
    page = admin_client.get(url(ChangeEvent, "change/", found[0].pk)).content.decode()
    assert f'<a href="/admin/canonical/appointment/{deleted.pk}/change/">appointment a4</a>' in page


@pytest.mark.django_db
def test_unmapped_code_report_links_to_a_prefilled_mapping_form(admin_client, world):
    mapper = CodeMapper(world.tenant)
    mapper.code("service_code", "wellsky", "PCS 9&1")
    mapper.code("service_code", "wellsky", "PCS 9&1")
    mapper.code("payer", "wellsky", "MCD-OH")
    mapper.flush()
    other = CodeMapper(world.tenant_b)
    other.code("payer", "wellsky", "BCBS")
    other.flush()
    rows = listed(admin_client.get(url(UnmappedCode), {"tenant__id__exact": world.tenant.pk}))
    assert [(r.category, r.source_code, r.occurrences) for r in rows] == [("payer", "MCD-OH", 1), ("service_code", "PCS 9&1", 2)]
    assert [r.source_code for r in listed(admin_client.get(url(UnmappedCode), {"category__exact": "payer"}))] == ["MCD-OH", "BCBS"]
    content = admin_client.get(url(UnmappedCode), {"category__exact": "service_code"}).content.decode()
    link = f"/admin/tenants/codemapping/add/?tenant={world.tenant.pk}&amp;category=service_code&amp;source_system=wellsky&amp;source_code=PCS+9%261"
    assert f'<a href="{link}">Add a mapping</a>' in content
    form = admin_client.get(link.replace("&amp;", "&")).context["adminform"].form
    assert (form["tenant"].value(), form["category"].value(), form["source_system"].value(), form["source_code"].value()) == (
        str(world.tenant.pk), "service_code", "wellsky", "PCS 9&1",
    )
    code = UnmappedCode.objects.get(source_code="MCD-OH")
    assert admin_client.post(url(UnmappedCode, "change/", code.pk), {"occurrences": 0}).status_code == 403
    assert UnmappedCode.objects.get(pk=code.pk).occurrences == 1


# --- identity -----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_master_patient_page_lists_its_linked_patients(admin_client, world):
    master = MasterPatient.objects.create(tenant=world.tenant)
    Patient.objects.filter(tenant=world.tenant, external_id__in=["p1", "p9"]).update(master=master)
    content = admin_client.get(url(MasterPatient, "change/", master.pk)).content.decode()
    assert "WellSky North" in content and "WellSky South" in content
    assert "Ana Rivera" in content and "Ana Rivers" in content
    assert "Chidi" not in content
    assert listed(admin_client.get(url(MasterPatient), {"q": str(master.public_id)})) == [master]
    assert AuditEvent.objects.filter(action="read", object_type="canonical.masterpatient", object_id=str(master.public_id)).count() == 1


def _reviews(world):
    p1 = Patient.objects.get(tenant=world.tenant, source_connection=world.conn, external_id="p1")
    p2 = Patient.objects.get(external_id="p2")
    p9 = Patient.objects.get(external_id="p9")
    decided = MatchReview.objects.create(tenant=world.tenant, patient=p2, candidate=p9, score=Decimal("0.900"), reasons=["name"], status="kept_apart")
    low = MatchReview.objects.create(tenant=world.tenant, patient=p1, candidate=p2, score=Decimal("0.710"), reasons=["birth_date"])
    high = MatchReview.objects.create(tenant=world.tenant, patient=p1, candidate=p9, score=Decimal("0.860"),
                                      reasons=["name", "birth_date", "sex"])
    return high, low, decided


@pytest.mark.django_db
def test_match_reviews_list_pending_first_and_show_the_pair_side_by_side(admin_client, world):
    high, low, decided = _reviews(world)
    assert listed(admin_client.get(url(MatchReview))) == [high, low, decided]
    page = admin_client.get(url(MatchReview, "change/", high.pk))
    content = page.content.decode()
    assert "<tr><th>name</th><td>Ana Rivera</td><td>Ana Rivers</td></tr>" in content
    assert "<tr><th>birth date</th><td>March 2, 1948</td><td>March 2, 1948</td></tr>" in content
    assert "<td>urn:mrn:wellsky|MRN-p1</td>" in content and "<td>urn:mrn:wellsky|MRN-p9</td>" in content
    assert "<td>WellSky North [wellsky]</td><td>WellSky South [wellsky]</td>" in content
    assert '<div class="readonly">name, birth_date, sex</div>' in content
    assert f'action="/admin/canonical/matchreview/{high.pk}/decide/link/"' in content
    assert 'action="/admin/canonical/matchreview/' not in admin_client.get(url(MatchReview, "change/", decided.pk)).content.decode()
    assert AuditEvent.objects.filter(action="read", object_type="canonical.matchreview", object_id=str(high.pk)).count() == 1


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.mark.django_db
def test_bulk_actions_link_and_keep_apart_through_decide_review(admin_client, world, superuser):
    high, low, decided = _reviews(world)
    linked = admin_client.post(
        url(MatchReview), {"action": "link_pairs", "_selected_action": [high.pk, decided.pk], "index": 0}, follow=True,
    )
    assert messages_of(linked) == ["Linked 1 pair(s).", "Skipped 1 pair(s) already decided."]
    high.refresh_from_db()
    decided.refresh_from_db()
    assert (high.status, high.decided_by_id, decided.status) == ("linked", superuser.pk, "kept_apart")
    p1, p9 = Patient.objects.get(pk=high.patient_id), Patient.objects.get(pk=high.candidate_id)
    assert p1.master_id is not None and p1.master_id == p9.master_id
    apart = admin_client.post(url(MatchReview), {"action": "keep_pairs_apart", "_selected_action": [low.pk], "index": 0}, follow=True)
    assert messages_of(apart) == ["Kept apart 1 pair(s)."]
    low.refresh_from_db()
    p2 = Patient.objects.get(pk=low.candidate_id)
    assert (low.status, low.decided_by_id) == ("kept_apart", superuser.pk)
    assert p2.master_id is not None and p2.master_id != p1.master_id
    decisions = AuditEvent.objects.filter(action="update", object_type="canonical.matchreview").order_by("pk")
    assert [(e.object_id, e.detail["decision"], e.actor_user_id) for e in decisions] == [
        (str(high.pk), "linked", superuser.pk), (str(low.pk), "kept_apart", superuser.pk),
    ]


@pytest.mark.django_db
def test_the_page_buttons_decide_one_review(admin_client, world):
    high, low, _ = _reviews(world)
    decide = f"/admin/canonical/matchreview/{high.pk}/decide/link/"
    assert admin_client.get(decide).status_code == 405
    assert MatchReview.objects.get(pk=high.pk).status == "pending"
    assert admin_client.post(f"/admin/canonical/matchreview/{high.pk}/decide/merge-all/").status_code == 404
    response = admin_client.post(decide, follow=True)
    assert response.redirect_chain == [(f"/admin/canonical/matchreview/{high.pk}/change/", 302)]
    assert messages_of(response) == ["Linked 1 pair(s)."]
    assert MatchReview.objects.get(pk=high.pk).status == "linked"
    again = admin_client.post(decide, follow=True)
    assert messages_of(again) == ["Linked 0 pair(s).", "Skipped 1 pair(s) already decided."]
    kept = admin_client.post(f"/admin/canonical/matchreview/{low.pk}/decide/keep-apart/", follow=True)
    assert messages_of(kept) == ["Kept apart 1 pair(s)."]
    assert MatchReview.objects.get(pk=low.pk).status == "kept_apart"


@pytest.mark.django_db
def test_a_link_that_would_join_patients_kept_apart_is_refused_with_the_reason(admin_client, world):
    high, low, decided = _reviews(world)  # decided: p2 and p9 kept apart
    assert messages_of(admin_client.post(f"/admin/canonical/matchreview/{high.pk}/decide/link/", follow=True)) == ["Linked 1 pair(s)."]  # p1 + p9
    refused = admin_client.post(f"/admin/canonical/matchreview/{low.pk}/decide/link/", follow=True)  # p1 + p2 would join p2 and p9
    assert messages_of(refused) == [
        "Linking would join two patients that a reviewer kept apart; keep this pair apart or undo that decision first.",
        "Linked 0 pair(s).",
    ]
    assert MatchReview.objects.get(pk=low.pk).status == "pending"


@pytest.mark.django_db
def test_staff_who_may_only_view_reviews_cannot_decide(client, world):
    from django.contrib.auth.models import Permission

    from tests.factories import UserFactory

    high, _, _ = _reviews(world)
    viewer = UserFactory(username="viewer")
    viewer.user_permissions.add(Permission.objects.get(codename="view_matchreview"))
    client.force_login(viewer)
    page = client.get(url(MatchReview))
    assert page.status_code == 200
    assert page.context["action_form"] is None or "link_pairs" not in dict(page.context["action_form"].fields["action"].choices)
    assert b"/decide/link/" not in client.get(url(MatchReview, "change/", high.pk)).content
    assert client.post(f"/admin/canonical/matchreview/{high.pk}/decide/link/").status_code == 403
    refused = client.post(url(MatchReview), {"action": "link_pairs", "_selected_action": [high.pk], "index": 0})
    assert refused.status_code == 200
    assert MatchReview.objects.get(pk=high.pk).status == "pending"


@pytest.mark.services
@pytest.mark.django_db
def test_postgres_unfiltered_big_lists_use_the_planner_estimate_not_count(admin_client, world, monkeypatch):
    monkeypatch.setattr("canonical.admin_base.ESTIMATE_COUNT_ABOVE_ROWS", 0)
    with db_connection.cursor() as cursor:
        cursor.execute("ANALYZE canonical_changeevent")  # sees this transaction's rows
    total = ChangeEvent.objects.count()
    with CaptureQueriesContext(db_connection) as captured:
        page = admin_client.get(url(ChangeEvent))
    assert page.context["cl"].result_count == total
    assert not [q["sql"] for q in captured if "COUNT(" in q["sql"].upper() and "canonical_changeevent" in q["sql"]]
    with CaptureQueriesContext(db_connection) as captured:
        filtered = admin_client.get(url(ChangeEvent), {"action__exact": "delete"})
    assert filtered.context["cl"].result_count == 1
    assert [q["sql"] for q in captured if "COUNT(" in q["sql"].upper() and "canonical_changeevent" in q["sql"]] != []
