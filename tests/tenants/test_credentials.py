import base64

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import call_command
from django.db import connection as db_connection
from fernet_fields.hkdf import derive_fernet_key

from hub.crypto import reset_key_caches
from tenants.models import AuditEvent, Credential
from tests.factories import ConnectionFactory, CredentialFactory

SECRETS = {
    "password": "correct horse battery staple",
    "totp_secret": "JBSWY3DPEHPK3PXP",
    "client_secret": "s3cr3t-client",
}


def raw_column(credential: Credential, column: str) -> bytes:
    with db_connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM tenants_credential WHERE id = %s", [credential.pk])  # noqa: S608
        return bytes(cursor.fetchone()[0])


@pytest.mark.django_db
def test_secrets_are_not_plaintext_in_the_database(settings):
    credential = CredentialFactory()
    for column, plaintext in SECRETS.items():
        stored = raw_column(credential, column)
        assert plaintext.encode() not in stored
        fernet = Fernet(derive_fernet_key(settings.FERNET_KEYS[0]))
        assert fernet.decrypt(stored).decode() == plaintext
    assert Credential.objects.get(pk=credential.pk).password == SECRETS["password"]


@pytest.mark.django_db
def test_rotation_reencrypts_with_the_first_key(settings):
    old, new = "old-key-material-0001", "new-key-material-0002"
    settings.FERNET_KEYS = [old]
    credential = CredentialFactory()
    before = raw_column(credential, "password")

    settings.FERNET_KEYS = [new, old]  # the new key first, the old one still readable
    assert Credential.objects.get(pk=credential.pk).password == SECRETS["password"]
    call_command("rotate_fernet_keys", stdout=open("/dev/null", "w"))
    after = raw_column(credential, "password")
    assert after != before
    Fernet(derive_fernet_key(new)).decrypt(after)
    with pytest.raises(InvalidToken):
        Fernet(derive_fernet_key(old)).decrypt(after)

    settings.FERNET_KEYS = [new]  # the old key removed: everything still reads
    reloaded = Credential.objects.get(pk=credential.pk)
    assert (reloaded.password, reloaded.totp_secret, reloaded.client_secret) == tuple(SECRETS.values())
    assert AuditEvent.objects.filter(action="keys_rotated").count() == 1

    settings.FERNET_KEYS = [old]  # and the old key alone can no longer read them
    with pytest.raises(InvalidToken):
        Credential.objects.get(pk=credential.pk)
    settings.FERNET_KEYS = [new]
    reset_key_caches()


@pytest.mark.django_db
def test_repr_and_str_never_show_secrets():
    credential = CredentialFactory()
    for text in (repr(credential), str(credential)):
        for plaintext in SECRETS.values():
            assert plaintext not in text
    assert credential.secrets_set() == {"password", "totp_secret", "client_secret"}


@pytest.mark.django_db
def test_admin_never_renders_a_secret_and_empty_keeps_it(admin_client):
    credential = CredentialFactory(private_key_pem="-----BEGIN PRIVATE KEY-----\nMIIEv\n-----END PRIVATE KEY-----")
    connection = credential.connection
    page = admin_client.get(f"/admin/tenants/connection/{connection.pk}/change/").content.decode()
    for plaintext in [*SECRETS.values(), "MIIEv"]:
        assert plaintext not in page
    assert "Currently set — leave empty to keep it." in page

    form = _connection_form(connection, credential, password="", clear_totp_secret="on", client_secret="rotated-secret")
    response = admin_client.post(f"/admin/tenants/connection/{connection.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    credential.refresh_from_db()
    assert credential.password == SECRETS["password"]  # empty box: kept
    assert credential.totp_secret == ""  # cleared
    assert credential.client_secret == "rotated-secret"
    audit = AuditEvent.objects.filter(object_type="tenants.credential", action="update").get()
    assert audit.detail["fields"] == ["clear_totp_secret", "client_secret"]
    assert "rotated-secret" not in str(audit.detail)


@pytest.mark.django_db
def test_admin_rejects_a_totp_secret_that_is_not_base32(admin_client):
    credential = CredentialFactory()
    connection = credential.connection
    form = _connection_form(connection, credential, totp_secret="not base32 !!")
    response = admin_client.post(f"/admin/tenants/connection/{connection.pk}/change/", form)
    assert response.status_code == 200
    assert "A TOTP secret is base32" in response.content.decode()
    credential.refresh_from_db()
    assert credential.totp_secret == SECRETS["totp_secret"]


@pytest.mark.django_db
def test_newcomer_creates_a_connection_with_credentials_in_one_form(admin_client, tenant_a):
    form = {
        "tenant": tenant_a.pk, "vendor": "wellsky", "display_name": "WellSky North", "base_url": "https://api.wellsky.example/v1",
        "enabled": "on", "sync_schedule": "*/15 * * * *",
        "credential-TOTAL_FORMS": "1", "credential-INITIAL_FORMS": "0", "credential-MIN_NUM_FORMS": "0", "credential-MAX_NUM_FORMS": "1",
        "credential-0-username": "ops@agency.example", "credential-0-password": "pw-123456", "credential-0-totp_secret": "jbsw y3dp ehpk 3pxp",
        "credential-0-client_id": "", "credential-0-client_secret": "", "credential-0-private_key_pem": "", "credential-0-extra": '{"agency_tag": "north"}',
    }
    response = admin_client.post("/admin/tenants/connection/add/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    credential = Credential.objects.get(connection__display_name="WellSky North")
    assert credential.password == "pw-123456"
    assert credential.totp_secret == "JBSWY3DPEHPK3PXP"
    assert credential.extra_data == {"agency_tag": "north"}
    assert base64.b32decode(credential.totp_secret)


def _connection_form(connection, credential, **secret_fields) -> dict:
    form = {
        "tenant": connection.tenant_id, "vendor": connection.vendor, "display_name": connection.display_name,
        "base_url": connection.base_url, "enabled": "on", "sync_schedule": "",
        "credential-TOTAL_FORMS": "1", "credential-INITIAL_FORMS": "1", "credential-MIN_NUM_FORMS": "0", "credential-MAX_NUM_FORMS": "1",
        "credential-0-id": credential.pk, "credential-0-connection": connection.pk,
        "credential-0-username": credential.username, "credential-0-client_id": credential.client_id,
    }
    for name in ("password", "totp_secret", "client_secret", "private_key_pem", "extra"):
        form[f"credential-0-{name}"] = ""
    form.update({f"credential-0-{k}": v for k, v in secret_fields.items()})
    return form


@pytest.mark.django_db
def test_connection_without_credential_has_none():
    connection = ConnectionFactory()
    assert not Credential.objects.filter(connection=connection).exists()
