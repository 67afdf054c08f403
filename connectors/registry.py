"""The one registry of vendors the hub can connect to, keyed by vendor key.

Each entry is the vendor's class-level description; a tenant's connection to it is a
`tenants.Connection` row. The connector framework (sessions, paging, sync) builds on these keys.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VendorInfo:
    key: str
    name: str
    # Credential fields this vendor's login uses, so the admin can say what to fill in.
    credential_fields: tuple[str, ...]
    description: str = ""


VENDORS: dict[str, VendorInfo] = {
    info.key: info
    for info in (
        VendorInfo(
            "wellsky",
            "WellSky",
            ("username", "password", "totp_secret", "client_id", "client_secret"),
            "Portal login with MFA, Personal Care Connect (OAuth2) or FHIR R4 Connect.",
        ),
        VendorInfo(
            "eclinicalworks",
            "eClinicalWorks / healow",
            ("username", "password", "totp_secret", "client_id", "private_key_pem"),
            "Portal login with MFA; FHIR R4 with SMART Backend Services (RS384 client assertion).",
        ),
        VendorInfo(
            "welkin",
            "Welkin Health",
            ("client_id", "client_secret"),
            "API client id and secret; change notifications are pinged to the hub.",
        ),
        VendorInfo(
            "fhir",
            "FHIR R4 server",
            ("client_id", "client_secret", "private_key_pem"),
            "Any FHIR R4 server: client credentials or SMART Backend Services.",
        ),
        VendorInfo("hl7v2", "HL7 v2 feed (MLLP)", (), "Inbound HL7 v2 messages over MLLP or file drop."),
    )
}


def vendor_choices() -> list[tuple[str, str]]:
    return [(info.key, info.name) for info in VENDORS.values()]


def get_vendor(key: str) -> VendorInfo:
    try:
        return VENDORS[key]
    except KeyError:
        raise KeyError(f"unknown vendor {key!r}; known: {', '.join(VENDORS)}") from None
