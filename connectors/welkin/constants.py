"""Welkin Health (v8, Welkin Cloud): paths, value maps, webhook settings."""

from __future__ import annotations

SOURCE_SYSTEM = "welkin"
MRN_SYSTEM = "urn:welkin:mrn"

# Connector resource -> the list path below /{tenant}/{instance}/.
PATHS = {"coaches": "users", "patients": "patients", "calendar_events": "calendar/events", "care_plans": "care-plans",
         "assessments": "assessments", "encounters": "encounters"}
# A ping's eventEntity -> the connector resource it asks us to pull. PROGRAM is not read (see connector.py).
EVENT_RESOURCES = {"PATIENT": "patients", "USER": "coaches", "CALENDAR": "calendar_events", "CARE_PLAN": "care_plans",
                   "ASSESSMENT": "assessments", "ENCOUNTER": "encounters"}
IGNORED_EVENTS = frozenset({"PROGRAM", "CDT"})  # entities Welkin pings about that the hub does not keep

MAX_PAGE_SIZE = 100  # Welkin's largest `size`

# Webhooks
SIGNATURE_HEADER = "X-Welkin-Signature"
TIMESTAMP_HEADER = "X-Welkin-Timestamp"
MAX_PING_AGE_S = 300  # a ping signed longer ago than this (or this far ahead) is refused: replays
MAX_PING_BYTES = 16 * 1024  # a ping is about 250 bytes
DELIVERY_SEEN_S = 15 * 60  # a delivery (sourceId, subtype, eventTime) seen once is ignored this long: Welkin's retries
PENDING_PULL_S = 5 * 60  # a queued pull covers later pings for the same record until it starts, at most this long

# Value maps (Welkin -> canonical)
SEX = {"FEMALE": "female", "MALE": "male", "OTHER": "other", "UNKNOWN": "unknown"}
LANGUAGES = {"ENGLISH": "en", "SPANISH": "es", "VIETNAMESE": "vi", "RUSSIAN": "ru", "CHINESE": "zh", "FRENCH": "fr"}
EVENT_STATUS = {"SCHEDULED": "booked", "COMPLETED": "fulfilled", "CANCELLED": "cancelled", "NO_SHOW": "noshow"}
EVENT_VISIT_TYPE = {"VIDEO_CALL": "telehealth", "PHONE_CALL": "telehealth", "IN_PERSON": "in-person"}
CARE_PLAN_STATUS = {"DRAFT": "draft", "ACTIVE": "active", "ON_HOLD": "on-hold", "COMPLETED": "completed", "CANCELLED": "revoked"}
ASSESSMENT_STATUS = {"DRAFT": "in-progress", "IN_PROGRESS": "in-progress", "COMPLETED": "completed", "AMENDED": "amended"}
# Welkin's encounter lifecycle: DRAFT (planned), OPEN (started), ACTIVE (in progress), FINALIZED (signed).
ENCOUNTER_STATUS = {"DRAFT": "planned", "OPEN": "arrived", "ACTIVE": "in-progress", "FINALIZED": "finished", "CANCELLED": "cancelled"}

# Canonical -> Welkin, for writes
WELKIN_SEX = {v: k for k, v in SEX.items()}
WELKIN_LANGUAGES = {v: k for k, v in LANGUAGES.items()}
WELKIN_EVENT_STATUS = {v: k for k, v in EVENT_STATUS.items()}
WELKIN_ASSESSMENT_STATUS = {"in-progress": "IN_PROGRESS", "completed": "COMPLETED", "amended": "AMENDED"}
