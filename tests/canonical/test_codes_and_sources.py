import pytest

from canonical.codes import CodeMapper
from canonical.models import SourceRecord, UnmappedCode
from canonical.sources import Payload, mark_failed, store_payloads
from tests.factories import CodeMappingFactory, ConnectionFactory


@pytest.mark.django_db
def test_mapped_codes_translate_and_unmapped_are_kept_and_counted(tenant_a, tenant_b):
    CodeMappingFactory(tenant=tenant_a, category="service_code", source_system="wellsky", source_code="PCS",
                       target_system="HCPCS", target_code="T1019", display="Personal care")
    CodeMappingFactory(tenant=tenant_a, category="service_code", source_system="wellsky", source_code="OLD",
                       target_code="S9122", active=False)
    mapper = CodeMapper(tenant_a)
    assert mapper.code("service_code", "wellsky", "PCS") == "T1019"
    assert mapper.map("service_code", "wellsky", "PCS").display == "Personal care"
    assert mapper.code("service_code", "wellsky", "OLD") == "OLD"  # inactive mapping: kept as it came
    assert mapper.code("service_code", "wellsky", "ZZZ") == "ZZZ"
    assert mapper.code("service_code", "wellsky", "ZZZ") == "ZZZ"
    assert mapper.code("service_code", "wellsky", "") == ""
    assert CodeMapper(tenant_b).code("service_code", "wellsky", "PCS") == "PCS"  # mappings are per tenant
    assert mapper.flush() == 2
    again = CodeMapper(tenant_a)
    again.code("service_code", "wellsky", "ZZZ")
    again.flush()
    rows = sorted(UnmappedCode.objects.filter(tenant=tenant_a).values_list("source_code", "occurrences"))
    assert rows == [("OLD", 1), ("ZZZ", 3)]
    assert not UnmappedCode.objects.filter(tenant=tenant_b).exists()


@pytest.mark.django_db
def test_payloads_are_kept_once_each(tenant_a):
    connection = ConnectionFactory(tenant=tenant_a)
    payloads = [Payload("patients", "p1", '{"id": "p1"}'), Payload("patients", "p2", '{"id": "p2"}')]
    first = store_payloads(payloads, tenant=tenant_a, connection=connection)
    again = store_payloads(payloads, tenant=tenant_a, connection=connection)
    assert first == again and len(set(first)) == 2
    changed = store_payloads([Payload("patients", "p1", '{"id": "p1", "x": 1}')], tenant=tenant_a, connection=connection)
    assert changed[0] not in first
    assert SourceRecord.objects.filter(external_id="p1").count() == 2
    mark_failed(changed, error="birthDate: not a date", path="birthDate")
    failed = SourceRecord.objects.get(pk=changed[0])
    assert (failed.status, failed.error_path) == ("failed", "birthDate")


@pytest.mark.django_db
def test_a_payload_a_concurrent_writer_kept_first_is_not_stored_twice(tenant_a, monkeypatch):
    from canonical import sources

    connection = ConnectionFactory(tenant=tenant_a)
    p1, p2 = Payload("patients", "p1", '{"id": "p1"}'), Payload("patients", "p2", '{"id": "p2"}')
    (kept,) = store_payloads([p1], tenant=tenant_a, connection=connection)
    # p1 lands between this writer's look and its write: the look finds nothing, the write must skip it
    monkeypatch.setattr(sources, "_lookup", lambda *args: {})
    stored = store_payloads([p1, p2], tenant=tenant_a, connection=connection)
    assert stored[0] == kept and stored[1] != kept and stored.created == 1
    assert sorted(SourceRecord.objects.values_list("external_id", flat=True)) == ["p1", "p2"]


@pytest.mark.django_db
def test_a_payload_stored_with_its_outcome_and_restated_when_it_changes(tenant_a):
    connection = ConnectionFactory(tenant=tenant_a)
    body = '{"id": "p1", "birthDate": "soon"}'
    (failed,) = store_payloads([Payload("patients", "p1", body, status="failed", error="birthDate: not a date", error_path="birthDate")],
                               tenant=tenant_a, connection=connection)
    assert SourceRecord.objects.filter(pk=failed, status="failed", error_path="birthDate").exists()
    # the same payload normalizes after a mapping fix (a replay): the kept row says so, no new row
    (again,) = store_payloads([Payload("patients", "p1", body, status="normalized")], tenant=tenant_a, connection=connection)
    assert again == failed
    assert SourceRecord.objects.values_list("status", "error", "error_path").get() == ("normalized", "", "")
