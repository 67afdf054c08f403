"""The one registry of vendors, keyed by vendor key (STYLE.md: healthchecks' TRANSPORTS).

A vendor module calls `register` on import; `HUB_EXTRA_CONNECTORS` names extra modules to import
(a private vendor, or the loopback test vendor). `vendor_choices` feeds Connection.vendor.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class VendorInfo:
    key: str
    name: str
    credential_fields: tuple[str, ...]
    description: str = ""


# Vendors the hub knows by name. Their connector classes land in their own issues; until a class
# is registered, a connection of that vendor can be configured but not synced.
VENDORS: dict[str, VendorInfo] = {
    info.key: info
    for info in (
        VendorInfo("wellsky", "WellSky", ("username", "password", "totp_secret", "client_id", "client_secret"),
                   "Portal login with MFA, Personal Care Connect (OAuth2) or FHIR R4 Connect."),
        VendorInfo("eclinicalworks", "eClinicalWorks / healow", ("username", "password", "totp_secret", "client_id", "private_key_pem"),
                   "Portal login with MFA; FHIR R4 with SMART Backend Services (RS384 client assertion)."),
        VendorInfo("welkin", "Welkin Health", ("client_id", "client_secret", "extra"),
                   "API client id and secret; change notifications are pinged to the hub."),
        VendorInfo("fhir", "FHIR R4 server", ("client_id", "client_secret", "private_key_pem"),
                   "Any FHIR R4 server: client credentials or SMART Backend Services."),
        VendorInfo("hl7v2", "HL7 v2 feed (MLLP)", (), "Inbound HL7 v2 messages over MLLP or file drop."),
    )
}

# The vendors whose connectors ship with the hub, imported on first use of the registry.
BUILTIN_CONNECTORS: tuple[str, ...] = ("connectors.wellsky", "connectors.eclinicalworks", "connectors.fhir.connector", "connectors.welkin")

CONNECTORS: dict[str, type] = {}
_loaded_extras = False
_extras_lock = threading.RLock()


def register(cls: type) -> type:
    """Class decorator: make a connector class available under its key."""
    CONNECTORS[cls.key] = cls
    VENDORS.setdefault(cls.key, VendorInfo(cls.key, cls.name, tuple(cls.credential_fields), cls.description))
    return cls


def _load_extras() -> None:
    # Worker threads race here on their first job: the flag goes up only once every module is
    # imported, so no thread sees it set while a connector is still unregistered. Re-entrant,
    # for an extra module that itself asks the registry while it is being imported.
    global _loaded_extras
    if _loaded_extras:
        return
    with _extras_lock:
        if _loaded_extras:
            return
        for module in (*BUILTIN_CONNECTORS, *getattr(settings, "HUB_EXTRA_CONNECTORS", [])):
            importlib.import_module(module)
        _loaded_extras = True


def vendor_choices() -> list[tuple[str, str]]:
    _load_extras()
    return [(info.key, info.name) for info in VENDORS.values()]


def get_vendor(key: str) -> VendorInfo:
    _load_extras()
    try:
        return VENDORS[key]
    except KeyError:
        raise KeyError(f"unknown vendor {key!r}; known: {', '.join(VENDORS)}") from None


def connector_class(key: str) -> type:
    _load_extras()
    try:
        return CONNECTORS[key]
    except KeyError:
        raise KeyError(f"no connector is installed for vendor {key!r}") from None


def connector_for(connection):
    """The connector instance for a connection row."""
    return connector_class(connection.vendor)(connection)
