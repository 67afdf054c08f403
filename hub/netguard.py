"""Which outbound addresses the hub may call (vendor base URLs, later webhook targets).

Private, loopback, link-local and other non-public addresses are refused unless a setting allows
them: a tenant's configuration must never turn the hub into a proxy into its own network.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")


class UnsafeUrl(ValueError):
    """The URL is malformed or points somewhere the hub must not call; the message says why."""


def is_public_ip(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str) -> list[str]:
    """Every address the host resolves to; empty when it does not resolve (no DNS here)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError):
        return []
    return sorted({info[4][0] for info in infos})


def check_url(url: str, *, require_https: bool, allow_private: bool) -> None:
    """Raise UnsafeUrl naming the problem; return None when the URL may be called.

    A host name that does not resolve now is accepted here: the HTTP layer checks the address
    again when it connects, which is the check that counts (DNS can change after validation).
    """
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise UnsafeUrl(f"the scheme must be https, not {parts.scheme or 'missing'!r}")
    if require_https and parts.scheme != "https":
        raise UnsafeUrl("the scheme must be https")
    if not parts.hostname:
        raise UnsafeUrl("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeUrl("credentials in the URL are not allowed; store them in the connection's credential")
    if allow_private:
        return
    host = parts.hostname.rstrip(".").lower()
    if host == "localhost" or host.endswith(_LOCAL_SUFFIXES):
        raise UnsafeUrl(f"the host {host!r} is a local name")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    addresses = [str(literal)] if literal else resolve(host)
    for address in addresses:
        if not is_public_ip(address):
            raise UnsafeUrl(f"the host {host!r} is a private, loopback or link-local address ({address})")
