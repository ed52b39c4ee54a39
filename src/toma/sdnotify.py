"""Tell systemd how the daemon is doing: ``sd_notify(3)`` over ``$NOTIFY_SOCKET``.

With ``Type=notify`` systemd waits for ``READY=1`` before it counts the
service as started (so a unit ordered after toma starts once the store is
open, recovered and locked), shows ``STATUS=`` in ``systemctl status``, and
takes ``STOPPING=1`` as the start of a clean stop. Without ``NOTIFY_SOCKET``
(not under systemd) every call does nothing. The protocol is one datagram
of ``KEY=value`` lines to a Unix socket; a name starting with ``@`` is in the
abstract namespace.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (``"READY=1"``, ``"STATUS=…"``…); whether systemd was there to hear it."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    target = "\0" + address[1:] if address[0] == "@" else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(state.encode("utf-8", "replace"))
    except OSError:
        return False  # systemd gone or socket unusable: the daemon goes on regardless
    return True
