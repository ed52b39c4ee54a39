"""config.toml, read with tomllib and validated into frozen dataclasses.

Every mistake is a :class:`ConfigError` naming the file, the line where it can
be found, and the key (``smtp.port``). Unknown keys are errors too: a typo
silently ignored is a setting silently not applied. Relative paths are taken
from the folder that holds the config file. Secrets are never in the file: a
section names an environment variable or a file, read only when needed.
"""

from toma.config.load import TOP_LEVEL, find_config, load_config, parse_config, parse_toml
from toma.config.model import (
    DAYS,
    DEFAULT_WINDOW,
    LONGEST_TICK,
    MAX_CONCURRENCY,
    MAX_RATE_PER_MINUTE,
    MAX_TIMEOUT,
    SHORTEST_TICK,
    Config,
    Daemon,
    Imap,
    Inbox,
    Invoices,
    InvoiceStage,
    OAuth2,
    Owner,
    Pace,
    Paths,
    Secret,
    SenderSettings,
    Smtp,
    StoreSettings,
    TransportSettings,
    Unsubscribing,
    Window,
)
from toma.config.reader import close, parse_listen

__all__ = [
    "DAYS",
    "DEFAULT_WINDOW",
    "LONGEST_TICK",
    "MAX_CONCURRENCY",
    "MAX_RATE_PER_MINUTE",
    "MAX_TIMEOUT",
    "SHORTEST_TICK",
    "TOP_LEVEL",
    "Config",
    "Daemon",
    "Imap",
    "Inbox",
    "InvoiceStage",
    "Invoices",
    "OAuth2",
    "Owner",
    "Pace",
    "Paths",
    "Secret",
    "SenderSettings",
    "Smtp",
    "StoreSettings",
    "TransportSettings",
    "Unsubscribing",
    "Window",
    "close",
    "find_config",
    "load_config",
    "parse_config",
    "parse_listen",
    "parse_toml",
]
