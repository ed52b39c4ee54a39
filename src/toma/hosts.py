"""Which hosts are this machine: where clear text (SMTP or IMAP without TLS, an
http unsubscribe link) is acceptable because nothing crosses a network."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses, decided without DNS."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
