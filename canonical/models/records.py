"""The canonical records. Field names are the hub's; `canonical.kinds` says how each is upserted
and `canonical.fhir` how each maps to FHIR R4."""

from __future__ import annotations

from django.db import models

from canonical import choices
from canonical.models.base import CanonicalRecord, ChildRow
from canonical.models.identity import MasterPatient
from canonical.validators import validate_npi

_PROTECT = models.PROTECT


class Person(CanonicalRecord):
    family_name = models.CharField(max_length=100, blank=True)
    given_names = models.JSONField(default=list, blank=True, help_text="Given names in order.")
    phone = models.CharField(max_length=40, blank=True)
    email = models.CharField(max_length=200, blank=True)

    class Meta(CanonicalRecord.Meta):
        abstract = True

    @property
    def display_name(self) -> str:
        return " ".join([*self.given_names, self.family_name]).strip()

    def __str__(self) -> str:
        return self.display_name or self.external_id


class Address(models.Model):
    address_line1 = models.CharField(max_length=200, blank=True)
    address_line2 = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=50, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=50, blank=True)

    class Meta:
        abstract = True


class Patient(Person, Address):
    """A client/patient as one source knows them; `master` joins the same person across sources."""

    birth_date = models.DateField(null=True, blank=True)
    sex = models.CharField(max_length=8, choices=choices.Sex.choices, default=choices.Sex.UNKNOWN)
    language = models.CharField(max_length=35, blank=True, help_text="BCP-47 code, e.g. en or es.")
    master = models.ForeignKey(MasterPatient, on_delete=models.SET_NULL, null=True, blank=True, related_name="patients")

    class Meta(CanonicalRecord.Meta):
        indexes = [
            *CanonicalRecord.Meta.indexes,
            models.Index(fields=["tenant", "birth_date"], name="patient_tenant_birth"),
        ]


class PatientIdentifier(ChildRow):
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="identifiers")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="+")
    system = models.CharField(max_length=200)
    value = models.CharField(max_length=100)

    class Meta(ChildRow.Meta):
        constraints = [models.UniqueConstraint(fields=["patient", "position"], name="patientidentifier_unique_position")]
        indexes = [models.Index(fields=["tenant", "system", "value"], name="patientidentifier_lookup")]

    def __str__(self) -> str:
        return f"{self.system}|{self.value}"


class Practitioner(Person):
    """A clinician or staff member who provides care."""

    npi = models.CharField(max_length=10, blank=True, validators=[validate_npi], verbose_name="NPI")
    roles = models.JSONField(default=list, blank=True)
    specialties = models.JSONField(default=list, blank=True)
    active = models.BooleanField(default=True)

    class Meta(CanonicalRecord.Meta):
        indexes = [*CanonicalRecord.Meta.indexes, models.Index(fields=["tenant", "npi"], name="practitioner_tenant_npi")]


class Location(CanonicalRecord, Address):
    """A facility, branch or service location."""

    name = models.CharField(max_length=200)
    type = models.CharField(max_length=100, blank=True)
    phone = models.CharField(max_length=40, blank=True)
    active = models.BooleanField(default=True)
    latitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    longitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)

    class Meta(CanonicalRecord.Meta):
        pass

    def __str__(self) -> str:
        return self.name


class Caregiver(Person):
    """A home-care worker who is offered and works shifts."""

    discipline = models.CharField(max_length=50, blank=True, help_text="e.g. HHA, CNA, LPN, RN.")
    skills = models.JSONField(default=list, blank=True)
    active = models.BooleanField(default=True)
    hire_date = models.DateField(null=True, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    latitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    longitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)

    class Meta(CanonicalRecord.Meta):
        pass


class Coverage(CanonicalRecord):
    """A patient's insurance: payer, member id, plan, and its order among the patient's coverages."""

    patient = models.ForeignKey(Patient, on_delete=_PROTECT, related_name="coverages")
    payer = models.CharField(max_length=200)
    payer_id = models.CharField(max_length=80, blank=True, help_text="Payer identifier (e.g. the EDI payer id).")
    member_id = models.CharField(max_length=80)
    plan = models.CharField(max_length=200, blank=True)
    group_number = models.CharField(max_length=80, blank=True)
    priority = models.PositiveSmallIntegerField(default=1, help_text="1 = primary, 2 = secondary, …")
    claim_filing_indicator = models.CharField(max_length=2, blank=True, help_text="X12 SBR09, e.g. MB Medicare B, MC Medicaid, CI commercial.")
    status = models.CharField(max_length=20, choices=choices.CoverageStatus.choices, default=choices.CoverageStatus.ACTIVE)
    start_date = models.DateField(null=True, blank=True)
    end_date = models.DateField(null=True, blank=True)

    class Meta(CanonicalRecord.Meta):
        pass

    def __str__(self) -> str:
        return f"{self.payer} {self.member_id}"


class Authorization(CanonicalRecord):
    """A payer's prior authorization: which services, how many units, for which dates.
    Units used and remaining are derived from the appointments linked to it (`selectors`)."""

    patient = models.ForeignKey(Patient, on_delete=_PROTECT, related_name="authorizations")
    payer = models.CharField(max_length=200)
    auth_number = models.CharField(max_length=80)
    service_codes = models.JSONField(default=list)
    units_allowed = models.DecimalField(max_digits=10, decimal_places=2)
    unit_type = models.CharField(max_length=20, default="visit", help_text="visit, hour or 15min.")
    start_date = models.DateField()
    end_date = models.DateField()
    status = models.CharField(max_length=20, choices=choices.AuthorizationStatus.choices, default=choices.AuthorizationStatus.ACTIVE)

    class Meta(CanonicalRecord.Meta):
        pass

    def __str__(self) -> str:
        return f"auth {self.auth_number}"


class Appointment(CanonicalRecord):
    """A scheduled visit."""

    patient = models.ForeignKey(Patient, on_delete=_PROTECT, related_name="appointments")
    practitioner = models.ForeignKey(Practitioner, on_delete=_PROTECT, null=True, blank=True, related_name="appointments")
    location = models.ForeignKey(Location, on_delete=_PROTECT, null=True, blank=True, related_name="appointments")
    authorization = models.ForeignKey(Authorization, on_delete=_PROTECT, null=True, blank=True, related_name="appointments")
    start = models.DateTimeField()
    end = models.DateTimeField()
    status = models.CharField(max_length=20, choices=choices.AppointmentStatus.choices, default=choices.AppointmentStatus.BOOKED)
    visit_type = models.CharField(max_length=12, choices=choices.VisitType.choices, default=choices.VisitType.IN_PERSON)
    service_code = models.CharField(max_length=40, blank=True)
    units = models.DecimalField(max_digits=8, decimal_places=2, default=1)
    description = models.CharField(max_length=300, blank=True)

    class Meta(CanonicalRecord.Meta):
        indexes = [*CanonicalRecord.Meta.indexes, models.Index(fields=["tenant", "start"], name="appointment_tenant_start")]

    def __str__(self) -> str:
        return f"appointment {self.start:%Y-%m-%d %H:%M}"


class Encounter(CanonicalRecord):
    """A visit that happened, with its diagnoses, procedures, vitals and notes."""

    patient = models.ForeignKey(Patient, on_delete=_PROTECT, related_name="encounters")
    practitioner = models.ForeignKey(Practitioner, on_delete=_PROTECT, null=True, blank=True, related_name="encounters")
    location = models.ForeignKey(Location, on_delete=_PROTECT, null=True, blank=True, related_name="encounters")
    appointment = models.ForeignKey(Appointment, on_delete=_PROTECT, null=True, blank=True, related_name="encounters")
    status = models.CharField(max_length=20, choices=choices.EncounterStatus.choices, default=choices.EncounterStatus.FINISHED)
    visit_type = models.CharField(max_length=12, choices=choices.VisitType.choices, default=choices.VisitType.IN_PERSON)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=300, blank=True, help_text="Chief complaint or reason for the visit, as the source says it.")
    details = models.JSONField(
        default=dict, blank=True,
        help_text="Clinical fields of the source's edition that have no column here, e.g. "
                  '{"edition": "behavioral_health", "session_minutes": 45, "risk_assessment": {…}}.',
    )

    class Meta(CanonicalRecord.Meta):
        pass

    def __str__(self) -> str:
        return f"encounter {self.period_start:%Y-%m-%d}"


class EncounterDiagnosis(ChildRow):
    encounter = models.ForeignKey(Encounter, on_delete=models.CASCADE, related_name="diagnoses")
    system = models.CharField(max_length=100, default="http://hl7.org/fhir/sid/icd-10-cm")
    code = models.CharField(max_length=10, help_text="ICD-10-CM, e.g. E11.9")
    display = models.CharField(max_length=300, blank=True)
    rank = models.PositiveSmallIntegerField(default=1)

    class Meta(ChildRow.Meta):
        constraints = [models.UniqueConstraint(fields=["encounter", "position"], name="encounterdiagnosis_unique_position")]



class EncounterProcedure(ChildRow):
    encounter = models.ForeignKey(Encounter, on_delete=models.CASCADE, related_name="procedures")
    system = models.CharField(max_length=100, help_text="CPT or HCPCS system URI.")
    code = models.CharField(max_length=10)
    modifiers = models.JSONField(default=list, blank=True)
    units = models.DecimalField(max_digits=8, decimal_places=2, default=1)
    display = models.CharField(max_length=300, blank=True)

    class Meta(ChildRow.Meta):
        constraints = [models.UniqueConstraint(fields=["encounter", "position"], name="encounterprocedure_unique_position")]



class EncounterVital(ChildRow):
    encounter = models.ForeignKey(Encounter, on_delete=models.CASCADE, related_name="vitals")
    loinc = models.CharField(max_length=10, verbose_name="LOINC code")
    display = models.CharField(max_length=200, blank=True)
    value = models.DecimalField(max_digits=12, decimal_places=4)
    unit = models.CharField(max_length=20, help_text="UCUM unit, e.g. mm[Hg], kg, /min.")
    effective_at = models.DateTimeField(null=True, blank=True)

    class Meta(ChildRow.Meta):
        constraints = [models.UniqueConstraint(fields=["encounter", "position"], name="encountervital_unique_position")]



class EncounterNote(ChildRow):
    """A progress note. Signed notes are locked: changes arrive as amendments with a reason code."""

    encounter = models.ForeignKey(Encounter, on_delete=models.CASCADE, related_name="notes")
    author = models.CharField(max_length=200, blank=True)
    text = models.TextField()
    status = models.CharField(max_length=10, choices=choices.NoteStatus.choices, default=choices.NoteStatus.DRAFT)
    signed_at = models.DateTimeField(null=True, blank=True)
    signed_by = models.CharField(max_length=200, blank=True)
    locked = models.BooleanField(default=False)
    amendments = models.JSONField(
        default=list, blank=True,
        help_text="[{reason_code, text, amended_by, amended_at, resigned_at}] in order.",
    )

    class Meta(ChildRow.Meta):
        constraints = [models.UniqueConstraint(fields=["encounter", "position"], name="encounternote_unique_position")]



class CarePlan(CanonicalRecord):
    """A plan of care: goals, activities and their outcomes."""

    patient = models.ForeignKey(Patient, on_delete=_PROTECT, related_name="care_plans")
    title = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=choices.CarePlanStatus.choices, default=choices.CarePlanStatus.ACTIVE)
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    goals = models.JSONField(default=list, blank=True, help_text="[{description, target, status}]")
    activities = models.JSONField(default=list, blank=True, help_text="[{description, status, frequency}]")
    outcomes = models.JSONField(default=list, blank=True, help_text="[{description, date}]")

    class Meta(CanonicalRecord.Meta):
        pass

    def __str__(self) -> str:
        return self.title or f"care plan {self.external_id}"


class Referral(CanonicalRecord):
    """A referral into the agency: who sent it, why, how urgent, and whether it was accepted."""

    patient = models.ForeignKey(Patient, on_delete=_PROTECT, null=True, blank=True, related_name="referrals")
    source = models.CharField(max_length=200, help_text="Referring organization or provider.")
    reason = models.CharField(max_length=500, blank=True)
    priority = models.CharField(max_length=10, choices=choices.Priority.choices, default=choices.Priority.ROUTINE)
    status = models.CharField(max_length=10, choices=choices.ReferralStatus.choices, default=choices.ReferralStatus.ACTIVE)
    service_code = models.CharField(max_length=40, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)

    class Meta(CanonicalRecord.Meta):
        pass

    def __str__(self) -> str:
        return f"referral from {self.source}"


class Assessment(CanonicalRecord):
    """A completed instrument (OASIS item set, PHQ-9, fall risk…) with answers and score."""

    patient = models.ForeignKey(Patient, on_delete=_PROTECT, related_name="assessments")
    instrument = models.CharField(max_length=100)
    status = models.CharField(max_length=20, choices=choices.AssessmentStatus.choices, default=choices.AssessmentStatus.COMPLETED)
    answers = models.JSONField(default=list, help_text="[{question, answer}] in order.")
    score = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta(CanonicalRecord.Meta):
        pass

    def __str__(self) -> str:
        return f"{self.instrument} {self.external_id}"


class Shift(CanonicalRecord):
    """A home-care shift at a client's, open until a caregiver accepts it."""

    client = models.ForeignKey(Patient, on_delete=_PROTECT, related_name="shifts")
    caregiver = models.ForeignKey(Caregiver, on_delete=_PROTECT, null=True, blank=True, related_name="shifts")
    start = models.DateTimeField()
    end = models.DateTimeField()
    status = models.CharField(max_length=12, choices=choices.ShiftStatus.choices, default=choices.ShiftStatus.OPEN)
    service_code = models.CharField(max_length=40, blank=True)

    class Meta(CanonicalRecord.Meta):
        indexes = [*CanonicalRecord.Meta.indexes, models.Index(fields=["tenant", "start"], name="shift_tenant_start")]

    def __str__(self) -> str:
        return f"shift {self.start:%Y-%m-%d %H:%M}"


class ShiftOffer(ChildRow):
    shift = models.ForeignKey(Shift, on_delete=models.CASCADE, related_name="offers")
    caregiver = models.ForeignKey(Caregiver, on_delete=models.PROTECT, related_name="offers")
    response = models.CharField(max_length=10, choices=choices.OfferResponse.choices, default=choices.OfferResponse.PENDING)
    offered_at = models.DateTimeField(null=True, blank=True)
    responded_at = models.DateTimeField(null=True, blank=True)

    class Meta(ChildRow.Meta):
        constraints = [models.UniqueConstraint(fields=["shift", "position"], name="shiftoffer_unique_position")]
