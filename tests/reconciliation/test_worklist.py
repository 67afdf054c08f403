"""The billers' worklist and decisions in the admin: confirm or reject a proposal, match by hand,
the sections with their totals, CSV export; decisions post and are audited."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.utils import timezone

from reconciliation import worklist
from reconciliation.choices import ClaimStatus, MatchMethod, MatchStatus
from reconciliation.models import Claim, Match, Posting
from reconciliation.posting import totals
from reconciliation.remittances import import_remittance_file
from tenants.models import AuditEvent
from tests.reconciliation.test_matching_and_posting import claim, fixture, patients  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


def test_a_biller_confirms_a_proposed_match_and_it_is_posted(tenant_a, patients, admin_client):  # noqa: F811
    guessed = claim(tenant_a, patients["p2"], "TYPO-1002", "120", date(2025, 3, 2))
    import_remittance_file(tenant=tenant_a, body=fixture("835_two_claims_paid.edi"))
    proposal = Match.objects.get(status=MatchStatus.PROPOSED)

    admin_client.post("/admin/reconciliation/match/", {"action": "confirm_selected", ACTION_CHECKBOX_NAME: [proposal.pk]})

    proposal.refresh_from_db()
    assert (proposal.status, proposal.decided_by.username) == (MatchStatus.CONFIRMED, "root")
    assert totals(guessed) == {"payment": Decimal("95.50"), "contractual": Decimal("24.50")}
    assert AuditEvent.objects.filter(object_type="reconciliation.match", actor_label="staff:root").count() == 1


def test_a_biller_rejects_a_proposal_then_matches_by_hand(tenant_a, patients, admin_client):  # noqa: F811
    claim(tenant_a, patients["p2"], "TYPO-1002", "120", date(2025, 3, 2))
    right = claim(tenant_a, patients["p1"], "OLD-PCN-1001", "249", date(2025, 3, 1), code="99214")  # no automatic guess
    import_remittance_file(tenant=tenant_a, body=fixture("835_two_claims_paid.edi"))
    proposal = Match.objects.get(status=MatchStatus.PROPOSED)
    unmatched = Match.objects.get(status=MatchStatus.UNMATCHED)

    admin_client.post("/admin/reconciliation/match/", {"action": "reject_selected", ACTION_CHECKBOX_NAME: [proposal.pk]})
    page = admin_client.get(f"/admin/reconciliation/match/{unmatched.pk}/by-hand/")
    admin_client.post(f"/admin/reconciliation/match/{unmatched.pk}/by-hand/", {"claim": right.pk})

    proposal.refresh_from_db(), unmatched.refresh_from_db(), right.refresh_from_db()
    assert page.status_code == 200 and "OLD-PCN-1001" in page.content.decode()
    assert (proposal.status, proposal.claim_id) == (MatchStatus.REJECTED, None)
    assert (unmatched.status, unmatched.method, unmatched.claim_id) == (MatchStatus.CONFIRMED, MatchMethod.MANUAL, right.pk)
    assert right.status == ClaimStatus.PAID
    assert not worklist.match_by_hand(unmatched, right, user=None)  # decided already: nothing posts twice
    assert Posting.objects.filter(claim=right).count() == 6


def test_matching_by_hand_refuses_another_tenants_claim(tenant_a, tenant_b, patients):  # noqa: F811
    import_remittance_file(tenant=tenant_a, body=fixture("835_two_claims_paid.edi"))
    theirs = Claim(tenant=tenant_b)
    with pytest.raises(ValueError, match="another tenant"):
        worklist.match_by_hand(Match.objects.filter(tenant=tenant_a).first(), theirs, user=None)


def test_the_worklist_shows_each_section_with_totals_and_exports_csv(tenant_a, patients, admin_client):  # noqa: F811
    claim(tenant_a, patients["p1"], "PCN4001", "300", date(2025, 3, 10), code="97530")
    late = claim(tenant_a, patients["p2"], "LATE-1", "80", date(2025, 1, 2))
    Claim.objects.filter(pk=late.pk).update(submitted_at=timezone.now() - timedelta(days=60))
    import_remittance_file(tenant=tenant_a, body=fixture("835_denials.edi"))
    import_remittance_file(tenant=tenant_a, body=fixture("835_plb_interest_forward_balance.edi"))

    sections = {s.key: s for s in worklist.build_worklist([tenant_a])}

    assert [row[1:] for row in sections["denied"].rows] == [("50", 1, Decimal("300.00"))]
    assert [row[1] for row in sections["unpaid"].rows] == ["LATE-1"]
    assert sections["out_of_balance"].total == Decimal("0.25")
    assert len(sections["unmatched"].rows) >= 1
    page = admin_client.get("/admin/reconciliation/match/worklist/")
    assert page.status_code == 200 and "Denied claims by reason" in page.content.decode()
    csv_export = admin_client.get("/admin/reconciliation/match/worklist/?format=csv")
    assert csv_export["Content-Type"] == "text/csv" and "LATE-1" in csv_export.content.decode()
