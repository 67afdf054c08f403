"""eClinicalWorks' names and codes, and what they become in the hub."""

from __future__ import annotations

SOURCE_SYSTEM = "eclinicalworks"  # CodeMapping.source_system for eClinicalWorks' local codes (visit types)
MRN_SYSTEM = "urn:eclinicalworks:mrn"
ACCOUNT_SYSTEM = "urn:eclinicalworks:account"
MEDICAID_SYSTEM = "urn:eclinicalworks:medicaid"
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
CPT_SYSTEM = "http://www.ama-assn.org/go/cpt"
PAGE_SIZE = 500  # the portal's largest page

SEX = {"F": "female", "M": "male", "U": "unknown"}
LANGUAGES = {"English": "en", "Spanish": "es", "Portuguese": "pt", "Haitian Creole": "ht", "Vietnamese": "vi"}
APPOINTMENT_STATUS = {"scheduled": "booked", "confirmed": "booked", "checked_out": "fulfilled", "no_show": "noshow",
                      "cancelled": "cancelled"}
COVERAGE_PRIORITIES = (1, 2, 3)

# Vital signs of the primary-care edition: field → (LOINC, display, UCUM unit).
VITALS = {
    "height_in": ("8302-2", "Body height", "[in_i]"),
    "weight_lb": ("29463-7", "Body weight", "[lb_av]"),
    "bmi": ("39156-5", "Body mass index", "kg/m2"),
    "bp_systolic": ("8480-6", "Systolic blood pressure", "mm[Hg]"),
    "bp_diastolic": ("8462-4", "Diastolic blood pressure", "mm[Hg]"),
    "pulse": ("8867-4", "Heart rate", "/min"),
    "resp_rate": ("9279-1", "Respiratory rate", "/min"),
    "temp_f": ("8310-5", "Body temperature", "[degF]"),
    "spo2": ("59408-5", "Oxygen saturation by pulse oximetry", "%"),
}
# Scored instruments of the behavioral-health edition: name → (LOINC, display).
SCORES = {"phq9": ("44261-6", "PHQ-9 total score"), "gad7": ("70274-6", "GAD-7 total score")}

# The portal's numeric refusals (sandbox/ecw/errors.py mirrors the vendor) → the hub's rule names.
REFUSALS = {
    "100": ("invalid_patient", "eClinicalWorks does not know the patient"),
    "101": ("invalid_provider", "eClinicalWorks does not know the provider"),
    "102": ("invalid_facility", "eClinicalWorks does not know the facility"),
    "103": ("invalid_visit_type", "eClinicalWorks does not know the visit type"),
    "301": ("outside_provider_template", "the slot is outside the provider's template at that facility"),
    "302": ("visit_type_not_allowed", "the provider's template does not allow that visit type then"),
    "303": ("slot_already_booked", "the provider already has a visit in that slot"),
    "304": ("not_on_slot_grid", "the start is not on the template's slot grid"),
    "305": ("start_in_past", "the start is in the past"),
    "410": ("module_not_entitled", "the practice has not licensed the module this needs"),
    "411": ("write_not_permitted", "this eClinicalWorks account has no write contract"),
    "501": ("no_coverage_on_file", "the patient has no coverage on file"),
}
REFUSAL_FIGURES = ("provider_id", "facility_id", "visit_type", "start", "weekday", "template_start", "template_end", "slot_minutes")
