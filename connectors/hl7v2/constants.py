"""What the HL7 v2 feed supports and how it names things."""

VENDOR = "hl7v2"

# message type -> trigger events we map (everything else is answered AR, code 200/201)
SUPPORTED = {
    "ADT": frozenset({"A01", "A04", "A08", "A28", "A31", "A40"}),
    "SIU": frozenset({"S12", "S13", "S14", "S15", "S26"}),
    "ORU": frozenset({"R01"}),
    "MDM": frozenset({"T02"}),
}

MAX_MESSAGE_BYTES = 1024 * 1024  # one MLLP frame's content
IDLE_TIMEOUT_SECONDS = 30.0  # a connection that sends nothing for this long is closed
FRAME_TIMEOUT_SECONDS = 60.0  # a frame that has started must finish within this (slow senders)
MAX_CONNECTIONS = 64  # concurrent MLLP connections; more are refused at accept
RAW_KEEP_ON_OVERSIZE = 64 * 1024  # characters of an oversize frame kept for triage

IDENTIFIER_SYSTEM_PREFIX = "urn:hl7v2:assigning-authority:"  # + CX.4 namespace when no URI/OID is given
LOINC_SYSTEMS = frozenset({"LN", "LOINC", "HTTP://LOINC.ORG"})
