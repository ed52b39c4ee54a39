"""The project's :class:`~toma.unsubscribe.Unsubscribe`: its secret, its addresses."""

from __future__ import annotations

from toma.config import Config
from toma.unsubscribe import Unsubscribe, load_or_create_secret

SECRET_FILE = "unsubscribe.key"  # noqa: S105 - a file name, not a secret


def unsubscriber(config: Config) -> Unsubscribe:
    """Links and mailtos signed with the data directory's secret (made on first use)."""
    config.paths.data.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Unsubscribe(
        secret=load_or_create_secret(config.paths.data / SECRET_FILE),
        base_url=config.unsubscribe.base_url or None,
        mailto=config.inbox.unsubscribe_address or config.owner.email,
    )
