"""What a config.toml holds, as frozen values; read and checked by :mod:`toma.config.load`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path

from toma.errors import ConfigError
from toma.timeutil import Duration, parse_duration

# The ranges of the numbers a config may hold: a value outside them is refused at
# load (and so by ``toma check``), with its file, line and key, rather than
# failing later inside the daemon.
MAX_CONCURRENCY = 100  # SMTP connections at once: far more than a provider allows
MAX_RATE_PER_MINUTE = 1_000_000  # a relay on this machine may take thousands a second
MAX_TIMEOUT = 3600.0  # seconds
SHORTEST_TICK = parse_duration("1s")
LONGEST_TICK = parse_duration("1d")

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Owner:
    name: str
    email: str
    timezone: str = "UTC"
    postal_address: str = ""
    signature: str = ""

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2]


@dataclass(frozen=True)
class Secret:
    """Where a password lives: an environment variable or a file, never the config."""

    env: str | None = None
    file: Path | None = None
    key: str = ""
    config_file: str = ""

    def reveal(self) -> str | None:
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(
                    f"the environment variable {self.env} is not set",
                    file=self.config_file,
                    key=self.key,
                )
            return value
        if self.file:
            try:
                return self.file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read the password file {self.file}: {exc.strerror}",
                    file=self.config_file,
                    key=self.key,
                ) from None
        return None


@dataclass(frozen=True)
class OAuth2:
    """One OAuth2 sign-in: the app registration, the provider's endpoints, the account.

    Resolved at load from ``[oauth2]``, the provider preset and the server's
    username; ``token_file`` is where :mod:`toma.auth` keeps the refresh token
    (owner-only, beside the data directory).
    """

    account: str  # the mailbox signed in to: the server's username
    client_id: str
    token_url: str
    token_file: Path
    client_secret: Secret = field(default_factory=Secret)
    device_authorization_url: str = ""  # "" = the loopback redirect instead
    authorization_url: str = ""
    scopes: tuple[str, ...] = ()
    redirect_port: int = 0  # the loopback redirect's port; 0 = any free one
    ca_file: Path | None = None  # the CA to trust for the endpoints; None = the system's


AUTH_METHODS = ("password", "xoauth2", "oauthbearer")


@dataclass(frozen=True)
class TransportSettings:
    kind: str = "maildir"  # "maildir" | "smtp"
    path: Path | None = None


@dataclass(frozen=True)
class Smtp:
    host: str = "localhost"
    port: int = 587
    security: str = "starttls"  # "starttls" | "tls" | "none"
    username: str | None = None
    password: Secret = field(default_factory=Secret)
    concurrency: int = 4
    rate_per_minute: int = 600
    # Messages in any 24 hours, as the provider counts them; 0: no daily limit.
    per_day: int = 0
    timeout: float = 30.0
    retry_for: Duration = field(default_factory=lambda: parse_duration("1h"))
    ca_file: Path | None = None
    provider: str = ""  # a preset of toma.config.providers, or ""
    auth: str = "password"  # one of AUTH_METHODS
    oauth2: OAuth2 | None = None  # set when auth is not "password"


@dataclass(frozen=True)
class Inbox:
    kind: str = "maildir"  # "maildir" | "imap"
    path: Path | None = None
    notify: str = "immediately"  # "immediately" | "daily" | "off": telling the owner of replies
    digest_at: time = time(8, 0)  # with notify = "daily", in the owner's zone
    soft_bounce_limit: int = 3  # soft bounces in a row that make an address bounced
    unsubscribe_address: str = ""  # mail to it unsubscribes its sender; "" = none of its own
    # Mail that arrived before this moment (aware UTC) is history: logged, never acted on.
    # None: the moment of the first sync of the mailbox, kept in the store.
    since: datetime | None = None


@dataclass(frozen=True)
class Imap:
    host: str = "localhost"
    port: int = 993
    security: str = "tls"  # "tls" | "starttls" | "none"
    username: str | None = None
    password: Secret = field(default_factory=Secret)
    folder: str = "INBOX"
    ca_file: Path | None = None
    idle: bool = True
    poll_every: Duration = field(default_factory=lambda: parse_duration("5min"))
    # Several folders read as the inbox; empty: ``folder`` alone (see ``inbox_folders``).
    folders: tuple[str, ...] = ()
    # The owner's Sent folder: "" finds it by SPECIAL-USE (RFC 6154), else "Sent".
    sent_folder: str = ""
    # A copy of what toma sends in the Sent folder: "auto" (unless the server files
    # submitted mail itself, as Gmail does), "always" or "never".
    sent_copy: str = "auto"
    # The Sent folder read as conversation: mail the owner wrote by hand counts as contact.
    read_sent: bool = True
    provider: str = ""  # a preset of toma.config.providers, or ""
    auth: str = "password"  # one of AUTH_METHODS
    oauth2: OAuth2 | None = None  # set when auth is not "password"
    # The provider's facts for the Sent folder: its usual name ("" = unknown: ask
    # SPECIAL-USE) and whether the provider files mail sent through its SMTP there
    # itself (true only when [smtp] names the same provider).
    provider_sent_folder: str = ""
    files_sent_itself: bool = False

    @property
    def inbox_folders(self) -> tuple[str, ...]:
        """The folders read as the inbox, in order: ``folders``, or ``folder`` alone."""
        return self.folders or (self.folder,)


@dataclass(frozen=True)
class Window:
    """When mail may arrive, in the recipient's own time zone."""

    name: str
    days: frozenset[int]  # 0 = Monday, as datetime.weekday()
    start: time
    end: time


@dataclass(frozen=True)
class Pace:
    min_gap: Duration = field(default_factory=lambda: parse_duration("3d"))
    max_late: Duration = field(default_factory=lambda: parse_duration("14d"))


@dataclass(frozen=True)
class InvoiceStage:
    at: Duration
    template: str


@dataclass(frozen=True)
class Invoices:
    terms: Duration = field(default_factory=lambda: parse_duration("30d"))
    stages: tuple[InvoiceStage, ...] = ()
    thank_you: str | None = None
    pause_on_reply: Duration = field(default_factory=lambda: parse_duration("7d"))


@dataclass(frozen=True)
class Paths:
    data: Path
    sequences: Path
    templates: Path
    newsletters: Path


@dataclass(frozen=True)
class Unsubscribing:
    base_url: str = ""  # the public https address of the one-click endpoint; "" = mailto only
    listen: tuple[str, int] = ("127.0.0.1", 8025)  # where the daemon serves it


@dataclass(frozen=True)
class Dashboard:
    """[dashboard]: where the pages are served, and who may read them."""

    serve: bool = True  # toma run serves it (toma serve always does)
    listen: tuple[str, int] | None = None  # None: [unsubscribe] listen (one server for both)
    password_hash: Secret | None = None  # where a hash made by `toma serve --hash-password` lives
    behind_proxy: bool = False  # a reverse proxy that authenticates stands in front
    # On PostgreSQL: the most documents the pages read into memory (0: no limit).
    max_documents: int = 200_000


@dataclass(frozen=True)
class Daemon:
    tick_every: Duration = field(default_factory=lambda: parse_duration("1min"))


@dataclass(frozen=True)
class StoreSettings:
    """[store]: the embedded store in ``paths.data``, or PostgreSQL at a DSN kept outside."""

    kind: str = "embedded"  # "embedded" or "postgres"
    dsn: Secret = field(default_factory=Secret)


@dataclass(frozen=True)
class SenderSettings:
    """One of ``[[senders]]``: who a contact's mail comes from, and through which servers.

    ``owner`` holds the name, address, signature and postal address as ``[owner]`` does
    for the default sender; ``smtp`` and ``imap`` are that sender's own servers.
    """

    owner: Owner
    smtp: Smtp
    imap: Imap

    @property
    def email(self) -> str:
        return self.owner.email


@dataclass(frozen=True)
class Config:
    file: Path
    owner: Owner
    transport: TransportSettings
    smtp: Smtp
    inbox: Inbox
    imap: Imap
    windows: Mapping[str, Window]
    pace: Pace
    invoices: Invoices
    paths: Paths
    daemon: Daemon
    unsubscribe: Unsubscribing = field(default_factory=Unsubscribing)
    dashboard: Dashboard = field(default_factory=Dashboard)
    store: StoreSettings = field(default_factory=StoreSettings)
    # The senders besides [owner] (see toma.config.senders); [owner] is the default one.
    senders: tuple[SenderSettings, ...] = ()
    # The sender this config speaks for: "" is [owner], else one of ``senders``' address;
    # then ``default_sender`` keeps [owner] and its servers (see toma.config.senders).
    sender: str = ""
    default_sender: SenderSettings | None = None

    @property
    def root(self) -> Path:
        return self.file.parent


# The window used where config.toml names none (and what [windows.default]
# starts from): weekdays, inside office hours. The planners use it too.
DEFAULT_WINDOW = Window("default", frozenset(range(5)), time(9, 1), time(16, 59))
DEFAULT_WINDOW_KEYS = {
    "days": [DAYS[day] for day in sorted(DEFAULT_WINDOW.days)],
    "start": DEFAULT_WINDOW.start.strftime("%H:%M"),
    "end": DEFAULT_WINDOW.end.strftime("%H:%M"),
}
