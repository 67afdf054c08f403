"""CSV import/export of code mappings through the admin, as an implementation lead does it."""

import html
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tenants.models import AuditEvent, CodeMapping
from tests.factories import CodeMappingFactory

HEADER = "tenant,category,source_system,source_code,target_system,target_code,display,active\n"
IMPORT_URL = "/admin/tenants/codemapping/import/"


def upload(client, text: str):
    file = SimpleUploadedFile("mappings.csv", text.encode(), content_type="text/csv")
    return client.post(IMPORT_URL, {"import_file": file, "format": "0", "resource": "0"})


def confirm(client, preview):
    form = preview.context["confirm_form"]
    data = {name: form.initial.get(name, "") for name in form.fields}
    return client.post("/admin/tenants/codemapping/process_import/", data)


@pytest.mark.django_db
def test_good_file_previews_then_imports(admin_client, tenant_a):
    csv = HEADER + (
        "tenant-a,service_code,wellsky,PCS,HCPCS,T1019,Personal care,1\n"
        "tenant-a,payer,wellsky,MCD,payer-id,77027,Medicaid,1\n"
    )
    preview = upload(admin_client, csv)
    assert preview.status_code == 200
    assert CodeMapping.objects.count() == 0  # the preview is a dry run
    done = confirm(admin_client, preview)
    assert done.status_code == 302
    assert sorted(CodeMapping.objects.values_list("source_code", "target_code")) == [("MCD", "77027"), ("PCS", "T1019")]
    audit = AuditEvent.objects.get(action="import")
    assert audit.detail["rows"] == 2
    assert audit.actor_label == "staff:root"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "bad_row, message",
    [
        ("tenant-a,not_a_category,wellsky,X,HCPCS,T1,,1\n", "Value 'not_a_category' is not a valid choice."),
        ("nobody,payer,wellsky,X,payer-id,1,,1\n", "Tenant matching query does not exist."),
        ("tenant-a,payer,wellsky,X,payer-id,,,1\n", "This field cannot be blank."),
    ],
)
def test_one_bad_row_imports_nothing_and_names_the_row(admin_client, tenant_a, bad_row, message):
    csv = HEADER + "tenant-a,service_code,wellsky,PCS,HCPCS,T1019,Personal care,1\n" + bad_row
    response = upload(admin_client, csv)
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())))
    assert response.status_code == 200
    # Either an import error ("Line number: 2 - …") or a validation table row ("2 <n> <field> <message>").
    assert f"Line number: 2 - {message}" in text or re.search(rf"\b2 \d+ \w+ {re.escape(message)}", text), text[-1500:]
    assert "confirm_form" not in response.context or response.context["confirm_form"] is None
    assert CodeMapping.objects.count() == 0


@pytest.mark.django_db
def test_reimport_of_the_same_file_changes_nothing(admin_client, tenant_a):
    csv = HEADER + "tenant-a,service_code,wellsky,PCS,HCPCS,T1019,Personal care,1\n"
    confirm(admin_client, upload(admin_client, csv))
    first = CodeMapping.objects.get()
    confirm(admin_client, upload(admin_client, csv))
    again = CodeMapping.objects.get()
    assert again.pk == first.pk and again.updated_at == first.updated_at


@pytest.mark.django_db
def test_export_writes_the_import_format(admin_client, tenant_a):
    CodeMappingFactory(tenant=tenant_a, source_code="PCS", display="=HYPERLINK(\"x\")")
    response = admin_client.post("/admin/tenants/codemapping/export/", {"format": "0", "resource": "0", **{
        f"codemappingresource_{name}": "on" for name in
        ("tenant", "category", "source_system", "source_code", "target_system", "target_code", "display", "active")}})
    assert response.status_code == 200
    text = response.content.decode()
    assert text.splitlines()[0] == HEADER.strip()
    assert "tenant-a,service_code,wellsky,PCS,HCPCS,T1019" in text
    assert "=HYPERLINK" not in text.replace("'=HYPERLINK", "")  # formulas are escaped
