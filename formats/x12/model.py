"""Plain data a claim or an eligibility inquiry needs, independent of Django.

The hub fills these from canonical records; the simulated clearinghouse builds them directly. The
writers in `claim837` and `eligibility` read them and never touch the database.

Conventions:
- Money and units are `Decimal`, never float; amounts are to the cent.
- Dates are `datetime.date`.
- Codes are the X12 code values themselves (`"MC"`, `"18"`, `"11"`), not friendly names, so that a
  reader of a file and a reader of this model see the same thing.
- Party, Address, Subscriber, Patient and Payer are frozen (hashable) because the 837 writer groups
  claims by billing provider, subscriber and patient; lists given for tuple fields are turned into
  tuples.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

# Claim frequency type codes (CLM05-3): original, replacement of a prior claim, void of a prior claim.
FREQUENCY_ORIGINAL = "1"
FREQUENCY_REPLACEMENT = "7"
FREQUENCY_VOID = "8"
CORRECTION_FREQUENCIES = frozenset({FREQUENCY_REPLACEMENT, FREQUENCY_VOID})

# Individual relationship code (SBR02, PAT01): the subscriber is the patient.
RELATIONSHIP_SELF = "18"

# The 837 allows at most 12 diagnosis codes on a professional claim (HI01–HI12) and 4 modifiers and
# 4 diagnosis pointers on a service line.
MAX_DIAGNOSES_PROFESSIONAL = 12
MAX_MODIFIERS = 4
MAX_DIAGNOSIS_POINTERS = 4
# CLM01, the patient control number the payer echoes back in the 835 (CLP01).
MAX_PATIENT_CONTROL_NUMBER_LENGTH = 38


def _as_tuple(instance: object, name: str) -> None:
    value = getattr(instance, name)
    if not isinstance(value, tuple):
        object.__setattr__(instance, name, tuple(value))


@dataclass(frozen=True)
class Address:
    """A postal address (N3/N4). `postal_code` is 5 or 9 digits without a dash."""

    line1: str
    city: str
    state: str
    postal_code: str
    line2: str = ""
    country: str = ""  # ISO 3166 code, only for addresses outside the United States

    def __post_init__(self) -> None:
        object.__setattr__(self, "postal_code", self.postal_code.replace("-", ""))


@dataclass(frozen=True)
class Party:
    """A provider or an organization: billing, rendering, referring, attending.

    An organization has `organization_name`; a person has `last_name` and `first_name`.
    `tax_id` is the EIN (9 digits, no dash); the billing provider needs it (REF*EI) and a 9-digit
    postal code.
    """

    organization_name: str = ""
    last_name: str = ""
    first_name: str = ""
    middle_name: str = ""
    npi: str = ""
    tax_id: str = ""
    address: Address | None = None
    phone: str = ""  # digits only, e.g. 6155551234
    taxonomy_code: str = ""  # NUCC provider taxonomy, e.g. 207Q00000X

    def __post_init__(self) -> None:
        object.__setattr__(self, "tax_id", self.tax_id.replace("-", ""))
        if not self.organization_name and not self.last_name:
            raise ValueError("a party needs an organization name or a last name")

    @property
    def is_person(self) -> bool:
        return not self.organization_name


@dataclass(frozen=True)
class Subscriber:
    """The insured member of the plan (2000B/2010BA of the 837, 2000C/2100C of the 270).

    `relationship` is SBR02 when the subscriber is the patient ("18" self). `payer_responsibility`
    is SBR01: P primary, S secondary, T tertiary. `claim_filing_indicator` is SBR09: MC Medicaid,
    MB Medicare Part B, MA Medicare Part A, CI commercial, HM HMO, BL Blue Cross/Blue Shield…
    """

    member_id: str
    last_name: str
    first_name: str
    birth_date: date | None = None
    sex: str = "U"  # F, M or U
    address: Address | None = None
    middle_name: str = ""
    relationship: str = RELATIONSHIP_SELF
    group_number: str = ""
    group_name: str = ""
    payer_responsibility: str = "P"
    claim_filing_indicator: str = "CI"


@dataclass(frozen=True)
class Patient:
    """The patient when it is not the subscriber (2000C/2010CA of the 837).

    `relationship` is PAT01, the patient's relationship to the subscriber: 01 spouse, 19 child,
    20 employee, 21 unknown, 39 organ donor, 40 cadaver donor, 53 life partner, G8 other.
    """

    last_name: str
    first_name: str
    birth_date: date
    sex: str
    address: Address
    relationship: str = "19"
    middle_name: str = ""


@dataclass(frozen=True)
class Payer:
    """The payer (2010BB of the 837, 2100A of the 270). `payer_id` is the clearinghouse's payer id."""

    name: str
    payer_id: str
    address: Address | None = None


@dataclass(frozen=True)
class Submitter:
    """Who sends the file (1000A): the hub's tenant at the clearinghouse.

    `identifier` is the submitter id the clearinghouse assigned (NM109). `interchange_id` (ISA06)
    and `application_code` (GS02) default to it.
    """

    name: str
    identifier: str
    contact_name: str
    contact_phone: str = ""
    contact_email: str = ""
    is_person: bool = False
    interchange_id_qualifier: str = "ZZ"
    interchange_id: str = ""
    application_code: str = ""

    def __post_init__(self) -> None:
        if not self.contact_phone and not self.contact_email:
            raise ValueError("a submitter needs a contact phone or email (PER)")
        if not self.interchange_id:
            object.__setattr__(self, "interchange_id", self.identifier)
        if not self.application_code:
            object.__setattr__(self, "application_code", self.identifier)


@dataclass(frozen=True)
class Receiver:
    """Who receives the file (1000B): the clearinghouse or the payer."""

    name: str
    identifier: str
    interchange_id_qualifier: str = "ZZ"
    interchange_id: str = ""
    application_code: str = ""

    def __post_init__(self) -> None:
        if not self.interchange_id:
            object.__setattr__(self, "interchange_id", self.identifier)
        if not self.application_code:
            object.__setattr__(self, "application_code", self.identifier)


@dataclass
class ClaimLine:
    """One service line (2400).

    `procedure_code` is HCPCS/CPT; `modifiers` up to four. `unit_basis` is UN (units) or MJ
    (minutes, anesthesia). `diagnosis_pointers` are 1-based positions in `Claim.diagnoses`
    (837P only). `revenue_code` is the 4-digit UB-04 revenue code (837I only).
    `line_control_number` goes to REF*6R and comes back in the 835 (REF*6R of the SVC loop).
    """

    procedure_code: str
    charge: Decimal
    service_date: date
    units: Decimal = Decimal(1)
    modifiers: tuple[str, ...] = ()
    unit_basis: str = "UN"
    service_date_to: date | None = None
    place_of_service: str = ""  # only when it differs from the claim's
    diagnosis_pointers: tuple[int, ...] = (1,)
    revenue_code: str = ""
    line_control_number: str = ""
    rendering_provider: Party | None = None
    prior_authorization: str = ""

    def __post_init__(self) -> None:
        _as_tuple(self, "modifiers")
        _as_tuple(self, "diagnosis_pointers")
        if len(self.modifiers) > MAX_MODIFIERS:
            raise ValueError(f"a service line has at most {MAX_MODIFIERS} modifiers, got {len(self.modifiers)}")
        if len(self.diagnosis_pointers) > MAX_DIAGNOSIS_POINTERS:
            raise ValueError(f"a service line has at most {MAX_DIAGNOSIS_POINTERS} diagnosis pointers")


@dataclass
class Claim:
    """One claim (2300) with its lines, parties and payer.

    For the 837P, `place_of_service` is CLM05-1 (e.g. 11 office). For the 837I,
    `facility_type_code` is CLM05-1, the first two digits of the type of bill (e.g. 13 hospital
    outpatient), and the type of bill is that plus `frequency_code`.
    `diagnoses` are ICD-10-CM codes, principal first; dots are dropped when written.
    `payer_claim_control_number` (REF*F8) is required for frequency 7 (replacement) and 8 (void).
    Leave `rendering_provider` empty when it is the billing provider, as the guides ask; leave
    `patient` empty when the patient is the subscriber (or has a member id of their own).
    """

    patient_control_number: str
    total_charge: Decimal
    diagnoses: tuple[str, ...]
    lines: list[ClaimLine]
    billing_provider: Party
    subscriber: Subscriber
    payer: Payer
    place_of_service: str = ""
    facility_type_code: str = ""
    frequency_code: str = FREQUENCY_ORIGINAL
    patient: Patient | None = None
    rendering_provider: Party | None = None
    referring_provider: Party | None = None
    attending_provider: Party | None = None  # 837I 2310A
    prior_authorization: str = ""
    payer_claim_control_number: str = ""
    # 837I
    statement_from: date | None = None
    statement_to: date | None = None
    admission_date: date | None = None
    admission_type_code: str = ""  # CL101: 1 emergency, 2 urgent, 3 elective…
    admission_source_code: str = ""  # CL102
    patient_status_code: str = ""  # CL103: 01 discharged home…
    admitting_diagnosis: str = ""
    # CLM07/08/09: assignment of benefits and release of information, with the usual defaults.
    assignment_code: str = "A"
    benefits_assigned: str = "Y"
    release_of_information: str = "Y"
    provider_signature_on_file: str = "Y"  # 837P only

    def __post_init__(self) -> None:
        _as_tuple(self, "diagnoses")
        if not self.patient_control_number or len(self.patient_control_number) > MAX_PATIENT_CONTROL_NUMBER_LENGTH:
            raise ValueError(
                f"patient control number must be 1 to {MAX_PATIENT_CONTROL_NUMBER_LENGTH} characters, "
                f"got {self.patient_control_number!r}"
            )
        if not self.lines:
            raise ValueError(f"claim {self.patient_control_number}: a claim needs at least one service line")
        if not self.diagnoses:
            raise ValueError(f"claim {self.patient_control_number}: a claim needs a principal diagnosis")
        if self.frequency_code in CORRECTION_FREQUENCIES and not self.payer_claim_control_number:
            raise ValueError(
                f"claim {self.patient_control_number}: frequency {self.frequency_code} (correction) needs the "
                "payer claim control number of the claim it corrects"
            )

    @property
    def type_of_bill(self) -> str:
        """Facility type code followed by the frequency code, e.g. "131" (837I)."""
        return f"{self.facility_type_code}{self.frequency_code}"
