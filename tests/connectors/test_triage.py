"""Failed-job triage in the admin (grouping, filters, retry, dismiss with a reason, audit) and the
scrubbing of error text before it reaches triage."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.utils import timezone

from connectors.choices import FailedJobStatus
from connectors.errors import AuthenticationFailed, RetryableError
from connectors.models import FailedJob
from connectors.scrub import scrub, signature
from connectors.triage import dismiss_failed_jobs, record_failed_job
from tenants.choices import AuditAction
from tenants.models import AuditEvent
from tests.factories import ConnectionFactory

URL = "/admin/connectors/failedjob/"


def fail(connection, message: str, *, exception=RetryableError, actor="sync_connection", age=timedelta(0),
         status=FailedJobStatus.OPEN) -> FailedJob:
    job = record_failed_job(actor=actor, args=[], kwargs={"connection_id": connection.pk}, exception=exception(message),
                            traceback_text=f"Traceback …\n{exception.__name__}: {message}", attempts=7)
    when = timezone.now() - age
    FailedJob.objects.filter(pk=job.pk).update(first_failed_at=when, last_failed_at=when, status=status)
    job.refresh_from_db()
    return job


@pytest.fixture
def connections(tenant_a, tenant_b):
    return (ConnectionFactory(tenant=tenant_a, display_name="A north"), ConnectionFactory(tenant=tenant_a, display_name="A south"),
            ConnectionFactory(tenant=tenant_b, display_name="B only"))


@pytest.fixture
def jobs(connections):
    north, south, b_only = connections
    return {
        "storm_1": fail(north, "wellsky: server error 503"),
        "storm_2": fail(south, "wellsky: server error 502", age=timedelta(hours=3)),
        "storm_old": fail(b_only, "wellsky: server error 500", age=timedelta(days=9)),
        "storm_dismissed": fail(north, "wellsky: server error 504", status=FailedJobStatus.DISMISSED),
        "login": fail(north, "wellsky: refused with 401 (bad_credentials)", exception=AuthenticationFailed, age=timedelta(minutes=5)),
    }


def listed(response) -> dict[int, int]:
    """pk → the 'open with same cause' count of each row on the changelist."""
    assert response.status_code == 200
    return {job.pk: job._same or 0 for job in response.context["cl"].result_list}


def pks(*jobs_) -> set[int]:
    return {job.pk for job in jobs_}


@pytest.mark.django_db
def test_the_changelist_groups_by_signature_and_counts_open_failures_with_the_same_cause(admin_client, jobs):
    assert len({jobs[k].signature for k in ("storm_1", "storm_2", "storm_old", "storm_dismissed")}) == 1
    assert jobs["login"].signature != jobs["storm_1"].signature

    response = admin_client.get(URL)

    assert listed(response) == {
        jobs["storm_1"].pk: 3, jobs["storm_2"].pk: 3, jobs["storm_old"].pk: 3, jobs["storm_dismissed"].pk: 3, jobs["login"].pk: 1,
    }
    html = response.content.decode()
    assert "Open with same cause" in html
    assert "wellsky: server error #" in html


@pytest.mark.django_db
def test_sorting_by_the_count_puts_the_biggest_group_first(admin_client, jobs):
    column = ["last_failed_at", "tenant", "connection", "actor", "exception_type", "message_short", "same_cause_open"].index(
        "same_cause_open") + 1
    response = admin_client.get(f"{URL}?o=-{column}")

    assert list(listed(response).values()) == [3, 3, 3, 3, 1]


@pytest.mark.django_db
def test_the_filters(admin_client, jobs, connections, tenant_a, tenant_b):
    north, south, _ = connections

    assert set(listed(admin_client.get(f"{URL}?tenant__id__exact={tenant_b.pk}"))) == pks(jobs["storm_old"])
    assert set(listed(admin_client.get(f"{URL}?tenant__id__exact={tenant_a.pk}"))) == pks(
        jobs["storm_1"], jobs["storm_2"], jobs["storm_dismissed"], jobs["login"])
    assert set(listed(admin_client.get(f"{URL}?connection__id__exact={south.pk}"))) == pks(jobs["storm_2"])
    assert set(listed(admin_client.get(f"{URL}?exception_type=connectors.errors.AuthenticationFailed"))) == pks(jobs["login"])
    assert set(listed(admin_client.get(f"{URL}?age=1h"))) == pks(jobs["storm_1"], jobs["storm_dismissed"], jobs["login"])
    assert set(listed(admin_client.get(f"{URL}?age=1d"))) == pks(jobs["storm_1"], jobs["storm_2"], jobs["storm_dismissed"], jobs["login"])
    assert set(listed(admin_client.get(f"{URL}?age=old"))) == pks(jobs["storm_old"])
    assert set(listed(admin_client.get(f"{URL}?status__exact=open&tenant__id__exact={tenant_a.pk}"))) == pks(
        jobs["storm_1"], jobs["storm_2"], jobs["login"])


@pytest.mark.django_db
def test_retry_re_enqueues_with_the_original_arguments_and_is_audited(admin_client, superuser, jobs, connections, sent,
                                                                       django_capture_on_commit_callbacks):
    north, south, _ = connections
    chosen = [jobs["storm_1"], jobs["storm_2"], jobs["storm_dismissed"]]

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(URL, {"action": "retry", ACTION_CHECKBOX_NAME: [j.pk for j in chosen]}, follow=True)

    assert [str(m) for m in response.context["messages"]] == ["Re-enqueued 2 job(s)."]
    assert sorted(sent, key=lambda m: m[1]["connection_id"]) == [
        ("sync_connection", {"connection_id": north.pk}), ("sync_connection", {"connection_id": south.pk}),
    ]
    statuses = dict(FailedJob.objects.values_list("pk", "status"))
    assert (statuses[jobs["storm_1"].pk], statuses[jobs["storm_2"].pk], statuses[jobs["storm_dismissed"].pk]) == (
        FailedJobStatus.RETRIED, FailedJobStatus.RETRIED, FailedJobStatus.DISMISSED)
    assert statuses[jobs["login"].pk] == FailedJobStatus.OPEN
    retried = FailedJob.objects.get(pk=jobs["storm_1"].pk)
    assert (retried.resolved_by, retried.resolution) == (superuser, "re-enqueued")
    audits = AuditEvent.objects.filter(object_type="connectors.failedjob").order_by("object_id")
    assert sorted(audits.values_list("object_id", "action", "actor_label", "detail")) == sorted([
        (str(jobs["storm_1"].pk), AuditAction.UPDATE, "staff:root", {"action": "retry", "actor": "sync_connection"}),
        (str(jobs["storm_2"].pk), AuditAction.UPDATE, "staff:root", {"action": "retry", "actor": "sync_connection"}),
    ])


@pytest.mark.django_db
def test_retry_in_bulk_across_a_filtered_list(admin_client, jobs, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"{URL}?exception_type=connectors.errors.RetryableError",
                                     {"action": "retry", "select_across": "1", "index": "0",
                                      ACTION_CHECKBOX_NAME: [jobs["storm_1"].pk]}, follow=True)

    assert [str(m) for m in response.context["messages"]] == ["Re-enqueued 3 job(s)."]  # the dismissed one stays dismissed
    assert len(sent) == 3
    assert FailedJob.objects.get(pk=jobs["login"].pk).status == FailedJobStatus.OPEN
    assert FailedJob.objects.filter(status=FailedJobStatus.RETRIED).count() == 3


@pytest.mark.django_db
def test_dismiss_asks_for_a_reason_first_and_changes_nothing_until_given(admin_client, jobs):
    chosen = [jobs["storm_1"].pk, jobs["login"].pk]

    form = admin_client.post(URL, {"action": "dismiss", ACTION_CHECKBOX_NAME: chosen})
    empty = admin_client.post(URL, {"action": "dismiss", ACTION_CHECKBOX_NAME: chosen, "reason": ""})

    assert form.status_code == 200
    assert "Dismiss 2 failed job(s)" in form.content.decode()
    assert 'name="reason"' in form.content.decode()
    assert empty.status_code == 200
    assert "This field is required." in empty.content.decode()
    assert FailedJob.objects.filter(status=FailedJobStatus.DISMISSED).count() == 1  # only the one from the fixture
    assert AuditEvent.objects.filter(object_type="connectors.failedjob").count() == 0


@pytest.mark.django_db
def test_dismiss_with_a_reason_marks_and_audits(admin_client, superuser, jobs):
    chosen = [jobs["storm_1"].pk, jobs["login"].pk]
    reason = "Vendor outage; the next scheduled sync covered it"

    response = admin_client.post(URL, {"action": "dismiss", ACTION_CHECKBOX_NAME: chosen, "reason": reason}, follow=True)

    assert [str(m) for m in response.context["messages"]] == ["Dismissed 2 job(s)."]
    for pk in chosen:
        job = FailedJob.objects.get(pk=pk)
        assert (job.status, job.resolution, job.resolved_by) == (FailedJobStatus.DISMISSED, reason, superuser)
    audits = AuditEvent.objects.filter(object_type="connectors.failedjob")
    assert sorted(audits.values_list("object_id", "detail")) == sorted([
        (str(jobs["storm_1"].pk), {"action": "dismiss", "actor": "sync_connection", "reason": reason}),
        (str(jobs["login"].pk), {"action": "dismiss", "actor": "sync_connection", "reason": reason}),
    ])
    assert FailedJob.objects.get(pk=jobs["storm_2"].pk).status == FailedJobStatus.OPEN


@pytest.mark.django_db
def test_the_dismiss_service_refuses_a_blank_reason(superuser, jobs):
    with pytest.raises(ValueError, match="A reason is required"):
        dismiss_failed_jobs(FailedJob.objects.all(), user=superuser, reason="   ")
    assert FailedJob.objects.filter(status=FailedJobStatus.OPEN).count() == 4


@pytest.mark.django_db
def test_a_failed_job_page_is_read_only(admin_client, jobs):
    job = jobs["login"]
    page = admin_client.get(f"{URL}{job.pk}/change/")

    assert page.status_code == 200
    assert "AuthenticationFailed: wellsky: refused with # (bad_credentials)" in page.content.decode()
    assert admin_client.get(f"{URL}add/").status_code == 403
    assert admin_client.post(f"{URL}{job.pk}/delete/", {"post": "yes"}).status_code == 403
    assert FailedJob.objects.filter(pk=job.pk).exists()


@pytest.mark.django_db
def test_a_failed_job_finds_its_tenant_and_connection_from_its_ids(connections):
    north, _, _ = connections
    job = record_failed_job(actor="open_session", args=[], kwargs={"connection_id": north.pk},
                            exception=AuthenticationFailed("wellsky: refused with 401 for jane.doe@agency.example"))

    assert (job.tenant_id, job.connection_id, job.sync_run_id, job.attempts) == (north.tenant_id, north.pk, None, 1)
    assert (job.exception_type, job.message) == ("connectors.errors.AuthenticationFailed", "wellsky: refused with # for <email>")


# --- scrub -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "clean"), [
    ("login failed for jane.doe@agency.example", "login failed for <email>"),
    ("patient 48213377 not found", "patient # not found"),
    ("page 12 of 99", "page 12 of 99"),  # short numbers are not identifiers
    ("dob 1950-03-14, ssn 123-45-6789, phone 555-867-5309, seen 03/14/2024", "dob #, ssn #, phone #, seen #"),
    ("value 'Jane Doe' is too long", "value '…' is too long"),
    ('field "MRN0012345" is invalid', 'field "…" is invalid'),
    ("Authorization: Bearer eyJhbGciOi.JzdWIiOiIx.MjM0NTY3", "Authorization: Bearer ***"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic ***"),
    ("token=abc123&password=hunter2", "token=***&password=***"),
    ("client_secret: s3cr3t-value, code=482913", "client_secret: ***, code=***"),
    ('{"access_token": "tok-1f2e3d"}', '{"…": "…"}'),
    ('duplicate key value violates unique constraint "x" DETAIL: Key (mrn)=(MRN0001) already exists.',
     'duplicate key value violates unique constraint "…" DETAIL: Key (mrn)=(…) already exists.'),
    ("the bearer of basic news", "the bearer of basic news"),
])
def test_scrub(text, clean):
    assert scrub(text) == clean


def test_scrub_truncates():
    assert scrub("x" * 5000) == "x" * 2000
    assert scrub("y" * 500, limit=300) == "y" * 300


def test_the_signature_ignores_numbers_but_not_the_actor_or_type():
    base = signature("sync_resource", "connectors.errors.RetryableError", "wellsky: server error 503 on page 7")
    assert base == signature("sync_resource", "connectors.errors.RetryableError", "wellsky: server error 502 on page 9")
    assert base != signature("pull_resource", "connectors.errors.RetryableError", "wellsky: server error 503 on page 7")
    assert base != signature("sync_resource", "connectors.errors.FinalError", "wellsky: server error 503 on page 7")
    assert base != signature("sync_resource", "connectors.errors.RetryableError", "welkin: server error 503 on page 7")
    assert len(base) == 16
