"""config.toml, read with tomllib and validated into frozen dataclasses.

Every mistake is a :class:`ConfigError` naming the file, the line where it can
be found, and the key (``smtp.port``). Unknown keys are errors too: a typo
silently ignored is a setting silently not applied. Relative paths are taken
from the folder that holds the config file. Secrets are never in the file: a
section names an environment variable or a file, read only when needed.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, TypeVar

from email_validator import EmailNotValidError, validate_email

from toma.errors import ConfigError
from toma.timeutil import Duration, DurationRangeError, parse_duration, zone

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
    timeout: float = 30.0
    retry_for: Duration = field(default_factory=lambda: parse_duration("1h"))
    ca_file: Path | None = None


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
class Daemon:
    tick_every: Duration = field(default_factory=lambda: parse_duration("1min"))


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

    @property
    def root(self) -> Path:
        return self.file.parent


# The window used where config.toml names none (and what [windows.default]
# starts from): weekdays, inside office hours. The planners use it too.
DEFAULT_WINDOW = Window("default", frozenset(range(5)), time(9, 1), time(16, 59))
_DEFAULT_WINDOW_KEYS = {
    "days": [DAYS[day] for day in sorted(DEFAULT_WINDOW.days)],
    "start": DEFAULT_WINDOW.start.strftime("%H:%M"),
    "end": DEFAULT_WINDOW.end.strftime("%H:%M"),
}

T = TypeVar("T")


class _Reader:
    """Walks the parsed TOML, knowing the text so errors can name a line."""

    def __init__(self, file: Path, text: str) -> None:
        self.file = file
        self.lines = text.splitlines()

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, line=self.locate(key), key=key)

    def locate(self, dotted: str) -> int | None:
        """The line where ``section.key`` is written, found by reading the text."""
        *sections, leaf = dotted.split(".")
        header = ".".join(sections) if sections else None
        in_section = header is None
        fallback = None
        for number, raw in enumerate(self.lines, start=1):
            line = raw.strip()
            if line.startswith("["):
                name = line.strip("[] \t")
                in_section = name == header
                if name == dotted:
                    fallback = fallback or number
                continue
            if in_section and re.match(rf"^{re.escape(leaf)}\s*=", line):
                return number
        if fallback:
            return fallback
        if header:
            for number, raw in enumerate(self.lines, start=1):
                if raw.strip().strip("[] \t") == header:
                    return number
        return None

    def table(self, raw: Mapping[str, Any], name: str, allowed: set[str]) -> Mapping[str, Any]:
        value = raw.get(name.rpartition(".")[2], {})
        if not isinstance(value, Mapping):
            raise self.error(name, f"[{name}] must be a table")
        for key in value:
            if key not in allowed:
                hint = _close(key, allowed)
                raise self.error(
                    f"{name}.{key}",
                    f"unknown key {key!r} in [{name}]"
                    + (f" (did you mean {hint!r}?)" if hint else ""),
                )
        return value

    def get(
        self,
        table: Mapping[str, Any],
        section: str,
        key: str,
        kind: type[T] | tuple[type, ...],
        default: Any = None,
        *,
        required: bool = False,
    ) -> Any:
        if key not in table:
            if required:
                raise self.error(section, f"[{section}] needs {key} = …")
            return default
        value = table[key]
        if isinstance(value, bool) and kind is not bool and kind != (bool,):
            raise self.error(
                f"{section}.{key}", f"{key} must be {_kind_name(kind)}, not true/false"
            )
        if not isinstance(value, kind):
            raise self.error(f"{section}.{key}", f"{key} must be {_kind_name(kind)}, got {value!r}")
        return value

    def convert(self, section: str, key: str, value: Any, parse: Callable[[Any], T]) -> T:
        try:
            return parse(value)
        except ValueError as exc:
            raise self.error(f"{section}.{key}", str(exc)) from None

    def path(self, value: str | None) -> Path | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.file.parent / path)


def _since(reader: _Reader, table: Mapping[str, Any], owner_zone: str) -> datetime | None:
    """``[inbox] since``: a TOML date or date-time, or an ISO 8601 string; a date or a time
    without an offset is read in the owner's zone."""
    value = reader.get(table, "inbox", "since", (str, date, datetime), None)
    if value is None:
        return None

    def parse(raw: str | date) -> datetime:
        if isinstance(raw, str):
            try:
                raw = datetime.fromisoformat(raw.strip())
            except ValueError:
                raise ValueError(
                    f"since must be an ISO 8601 date or date-time (2026-06-01 or "
                    f"2026-06-01T09:00+02:00), got {raw!r}"
                ) from None
        moment = raw if isinstance(raw, datetime) else datetime.combine(raw, time(0))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone(owner_zone))
        return moment.astimezone(UTC)

    return reader.convert("inbox", "since", value, parse)


def _kind_name(kind: Any) -> str:
    names = {
        str: "a string",
        int: "a whole number",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return str(names.get(kind, kind.__name__))


def _close(word: str, candidates: set[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def _parse_clock(text: str) -> time:
    if not re.fullmatch(r"\d{1,2}:\d{2}", text):
        raise ValueError(f'{text!r} is not a time of day (use "HH:MM", such as "09:01")')
    hours, minutes = (int(part) for part in text.split(":"))
    if hours > 23 or minutes > 59:
        raise ValueError(f"{text!r} is not a time of day")
    return time(hours, minutes)


def _parse_days(days: list[Any]) -> frozenset[int]:
    result = set()
    for day in days:
        if not isinstance(day, str) or day.lower()[:3] not in DAYS:
            raise ValueError(f"{day!r} is not a day: use mon, tue, wed, thu, fri, sat, sun")
        result.add(DAYS.index(day.lower()[:3]))
    if not result:
        raise ValueError("a window needs at least one day")
    return frozenset(result)


def _parse_address(text: str) -> str:
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"{text!r} is not an email address: {exc}") from None


def _secret(reader: _Reader, table: Mapping[str, Any], section: str) -> Secret:
    if "password" in table:
        raise reader.error(
            f"{section}.password",
            'passwords do not belong in the config: use password_env = "VAR" '
            'or password_file = "path"',
        )
    env = reader.get(table, section, "password_env", str)
    file = reader.get(table, section, "password_file", str)
    if env and file:
        raise reader.error(
            f"{section}.password_file", "give password_env or password_file, not both"
        )
    return Secret(
        env=env,
        file=reader.path(file),
        key=f"{section}.password_env" if env else f"{section}.password_file",
        config_file=str(reader.file),
    )


TOP_LEVEL = {
    "unsubscribe",
    "owner",
    "transport",
    "smtp",
    "inbox",
    "imap",
    "windows",
    "pace",
    "invoices",
    "paths",
    "daemon",
}


def load_config(path: str | Path) -> Config:
    """Read and validate ``path``; raise :class:`ConfigError` naming the first problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "no such config file (create one with `toma init`, or pass --config)", file=file
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=file) from None
    raw = parse_toml(text, file=file)
    return parse_config(raw, file=file.resolve(), text=text)


def parse_toml(text: str, *, file: Path) -> dict[str, Any]:
    """``text`` as TOML; :class:`ConfigError` naming ``file`` (and the line) if it is not."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        raise ConfigError(
            f"not valid TOML: {exc}", file=file, line=int(line.group(1)) if line else None
        ) from None
    except RecursionError:
        # tomllib descends once per level of nested arrays and tables.
        raise ConfigError(
            "not usable TOML: arrays or tables are nested too deeply", file=file
        ) from None


def parse_config(raw: Mapping[str, Any], *, file: Path, text: str = "") -> Config:
    r = _Reader(file, text)
    for key in raw:
        if key not in TOP_LEVEL:
            hint = _close(key, TOP_LEVEL)
            raise r.error(
                key, f"unknown section [{key}]" + (f" (did you mean [{hint}]?)" if hint else "")
            )

    # [owner]
    if "owner" not in raw:
        raise ConfigError("[owner] is missing: who sends the mail? (name, email)", file=file)
    t = r.table(raw, "owner", {"name", "email", "timezone", "postal_address", "signature"})
    owner = Owner(
        name=r.get(t, "owner", "name", str, required=True),
        email=r.convert(
            "owner", "email", r.get(t, "owner", "email", str, required=True), _parse_address
        ),
        timezone=r.get(t, "owner", "timezone", str, "UTC"),
        postal_address=r.get(t, "owner", "postal_address", str, ""),
        signature=r.get(t, "owner", "signature", str, ""),
    )
    r.convert("owner", "timezone", owner.timezone, zone)

    # [transport]
    t = r.table(raw, "transport", {"kind", "path"})
    kind = r.get(t, "transport", "kind", str, "maildir")
    if kind not in ("maildir", "smtp"):
        raise r.error("transport.kind", f'kind must be "maildir" or "smtp", got {kind!r}')
    transport = TransportSettings(
        kind=kind, path=r.path(r.get(t, "transport", "path", str, "var/outbox"))
    )

    # [smtp]
    t = r.table(
        raw,
        "smtp",
        {
            "host",
            "port",
            "security",
            "username",
            "password_env",
            "password_file",
            "password",
            "concurrency",
            "rate_per_minute",
            "timeout",
            "retry_for",
            "ca_file",
        },
    )
    security = r.get(t, "smtp", "security", str, "starttls")
    if security not in ("starttls", "tls", "none"):
        raise r.error(
            "smtp.security", f'security must be "starttls", "tls" or "none", got {security!r}'
        )
    smtp = Smtp(
        host=r.get(t, "smtp", "host", str, "localhost"),
        port=_port(r, t, "smtp", {"tls": 465, "starttls": 587, "none": 25}[security]),
        security=security,
        username=r.get(t, "smtp", "username", str),
        password=_secret(r, t, "smtp"),
        concurrency=_whole(r, t, "smtp", "concurrency", 4, most=MAX_CONCURRENCY),
        rate_per_minute=_whole(r, t, "smtp", "rate_per_minute", 600, most=MAX_RATE_PER_MINUTE),
        timeout=_timeout(r, t, "smtp", 30.0),
        retry_for=r.convert(
            "smtp", "retry_for", r.get(t, "smtp", "retry_for", str, "1h"), parse_duration
        ),
        ca_file=_ca_file(r, t, "smtp"),
    )
    if transport.kind == "smtp" and "smtp" not in raw:
        raise r.error("transport.kind", 'kind = "smtp" needs an [smtp] section (host, port, …)')

    # [inbox]
    t = r.table(
        raw,
        "inbox",
        {
            "kind",
            "path",
            "notify",
            "digest_at",
            "soft_bounce_limit",
            "unsubscribe_address",
            "since",
        },
    )
    kind = r.get(t, "inbox", "kind", str, "maildir")
    if kind not in ("maildir", "imap"):
        raise r.error("inbox.kind", f'kind must be "maildir" or "imap", got {kind!r}')
    notify = r.get(t, "inbox", "notify", str, "immediately")
    if notify not in ("immediately", "daily", "off"):
        raise r.error(
            "inbox.notify", f'notify must be "immediately", "daily" or "off", got {notify!r}'
        )
    unsubscribe_address = r.get(t, "inbox", "unsubscribe_address", str, "")
    inbox = Inbox(
        kind=kind,
        path=r.path(r.get(t, "inbox", "path", str, "var/inbox")),
        notify=notify,
        digest_at=r.convert(
            "inbox", "digest_at", r.get(t, "inbox", "digest_at", str, "08:00"), _parse_clock
        ),
        soft_bounce_limit=_positive(r, t, "inbox", "soft_bounce_limit", 3),
        unsubscribe_address=(
            r.convert("inbox", "unsubscribe_address", unsubscribe_address, _parse_address)
            if unsubscribe_address
            else ""
        ),
        since=_since(r, t, owner.timezone),
    )

    # [imap]
    t = r.table(
        raw,
        "imap",
        {
            "host",
            "port",
            "security",
            "username",
            "password_env",
            "password_file",
            "password",
            "folder",
            "ca_file",
            "idle",
            "poll_every",
        },
    )
    isecurity = r.get(t, "imap", "security", str, "tls")
    if isecurity not in ("starttls", "tls", "none"):
        raise r.error(
            "imap.security", f'security must be "tls", "starttls" or "none", got {isecurity!r}'
        )
    imap = Imap(
        host=r.get(t, "imap", "host", str, "localhost"),
        port=_port(r, t, "imap", 993 if isecurity == "tls" else 143),
        security=isecurity,
        username=r.get(t, "imap", "username", str),
        password=_secret(r, t, "imap"),
        folder=r.get(t, "imap", "folder", str, "INBOX"),
        ca_file=_ca_file(r, t, "imap"),
        idle=r.get(t, "imap", "idle", bool, True),
        poll_every=_interval(r, t, "imap", "poll_every", "5min"),
    )
    if inbox.kind == "imap" and "imap" not in raw:
        raise r.error("inbox.kind", 'kind = "imap" needs an [imap] section (host, username, …)')

    # [windows.*]
    windows_raw = raw.get("windows", {})
    if not isinstance(windows_raw, Mapping):
        raise r.error("windows", "[windows] must hold tables such as [windows.default]")
    windows: dict[str, Window] = {}
    for name in {"default", *windows_raw}:
        section = f"windows.{name}"
        w = r.table(windows_raw, section, {"days", "start", "end"}) if name in windows_raw else {}
        days = r.convert(
            section,
            "days",
            r.get(w, section, "days", list, _DEFAULT_WINDOW_KEYS["days"]),
            _parse_days,
        )
        start = r.convert(
            section,
            "start",
            r.get(w, section, "start", str, _DEFAULT_WINDOW_KEYS["start"]),
            _parse_clock,
        )
        end = r.convert(
            section, "end", r.get(w, section, "end", str, _DEFAULT_WINDOW_KEYS["end"]), _parse_clock
        )
        if end <= start:
            raise r.error(f"{section}.end", "a window must end after it starts")
        windows[name] = Window(name=name, days=days, start=start, end=end)

    # [pace]
    t = r.table(raw, "pace", {"min_gap", "max_late"})
    pace = Pace(
        min_gap=r.convert(
            "pace", "min_gap", r.get(t, "pace", "min_gap", str, "3d"), parse_duration
        ),
        max_late=r.convert(
            "pace", "max_late", r.get(t, "pace", "max_late", str, "14d"), parse_duration
        ),
    )

    # [invoices]
    t = r.table(raw, "invoices", {"terms", "stages", "thank_you", "pause_on_reply"})
    stages = []
    for index, stage in enumerate(r.get(t, "invoices", "stages", list, [])):
        key = f"invoices.stages[{index}]"
        if (
            not isinstance(stage, Mapping)
            or set(stage) - {"at", "template"}
            or "at" not in stage
            or "template" not in stage
        ):
            raise r.error("invoices.stages", f'{key} must be {{ at = "-3d", template = "…" }}')
        at = r.convert("invoices", "stages", stage["at"], lambda v: parse_duration(v, signed=True))
        stages.append(InvoiceStage(at=at, template=str(stage["template"])))
    invoices = Invoices(
        terms=r.convert(
            "invoices", "terms", r.get(t, "invoices", "terms", str, "30d"), parse_duration
        ),
        stages=tuple(stages),
        thank_you=r.get(t, "invoices", "thank_you", str),
        pause_on_reply=r.convert(
            "invoices",
            "pause_on_reply",
            r.get(t, "invoices", "pause_on_reply", str, "7d"),
            parse_duration,
        ),
    )

    # [paths]
    t = r.table(raw, "paths", {"data", "sequences", "templates", "newsletters"})

    def _p(key: str, default: str) -> Path:
        found = r.path(r.get(t, "paths", key, str, default))
        assert found is not None  # noqa: S101 - a default is always given
        return found

    paths = Paths(
        data=_p("data", "var/data"),
        sequences=_p("sequences", "sequences"),
        templates=_p("templates", "templates"),
        newsletters=_p("newsletters", "newsletters"),
    )

    # [daemon]
    t = r.table(raw, "daemon", {"tick_every"})
    daemon = Daemon(
        tick_every=_interval(r, t, "daemon", "tick_every", "1min"),
    )

    # [unsubscribe]
    t = r.table(raw, "unsubscribe", {"base_url", "listen"})
    base_url = r.get(t, "unsubscribe", "base_url", str, "")
    if base_url:
        from toma.mail.unsubscribe import check_base_url

        base_url = r.convert("unsubscribe", "base_url", base_url, check_base_url)
    unsubscribing = Unsubscribing(
        base_url=base_url,
        listen=r.convert(
            "unsubscribe",
            "listen",
            r.get(t, "unsubscribe", "listen", str, "127.0.0.1:8025"),
            parse_listen,
        ),
    )

    return Config(
        file=file,
        owner=owner,
        transport=transport,
        smtp=smtp,
        inbox=inbox,
        imap=imap,
        windows=windows,
        pace=pace,
        invoices=invoices,
        paths=paths,
        daemon=daemon,
        unsubscribe=unsubscribing,
    )


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'{text!r} is not HOST:PORT (such as "127.0.0.1:8025")')
    return host.strip("[]") or "127.0.0.1", int(port)


def _positive(r: _Reader, table: Mapping[str, Any], section: str, key: str, default: int) -> int:
    value: int = r.get(table, section, key, int, default)
    if value < 1:
        raise r.error(f"{section}.{key}", f"{key} must be at least 1")
    return value


def _whole(
    r: _Reader, table: Mapping[str, Any], section: str, key: str, default: int, *, most: int
) -> int:
    value: int = r.get(table, section, key, int, default)
    if not 1 <= value <= most:
        raise r.error(f"{section}.{key}", f"{key} must be between 1 and {most}, got {value}")
    return value


def _port(r: _Reader, table: Mapping[str, Any], section: str, default: int) -> int:
    value: int = r.get(table, section, "port", int, default)
    if not 1 <= value <= 65535:
        raise r.error(f"{section}.port", f"port must be between 1 and 65535, got {value}")
    return value


def _timeout(r: _Reader, table: Mapping[str, Any], section: str, default: float) -> float:
    value = float(r.get(table, section, "timeout", (int, float), default))
    if not value > 0:  # also refuses nan
        raise r.error(f"{section}.timeout", f"timeout must be more than 0 seconds, got {value}")
    if value > MAX_TIMEOUT:
        raise r.error(
            f"{section}.timeout", f"timeout must be at most {MAX_TIMEOUT:g} seconds, got {value:g}"
        )
    return value


def _interval(
    r: _Reader, table: Mapping[str, Any], section: str, key: str, default: str
) -> Duration:
    """A duration between :data:`SHORTEST_TICK` and :data:`LONGEST_TICK` (how often to act)."""
    text = r.get(table, section, key, str, default)
    wrong = r.error(
        f"{section}.{key}",
        f"{key} must be between {SHORTEST_TICK} and {LONGEST_TICK}, got {text!r:.40}",
    )
    try:
        value = parse_duration(text)
    except DurationRangeError:
        raise wrong from None
    except ValueError as exc:
        raise r.error(f"{section}.{key}", str(exc)) from None
    if not SHORTEST_TICK.seconds <= value.approx().total_seconds() <= LONGEST_TICK.seconds:
        raise wrong
    return value


def _ca_file(r: _Reader, table: Mapping[str, Any], section: str) -> Path | None:
    """The CA bundle to trust, which must be a readable file now, not at the first connection."""
    path = r.path(r.get(table, section, "ca_file", str))
    if path is None:
        return None
    key = f"{section}.ca_file"
    if not path.exists():
        raise r.error(key, f"no such file: {path}")
    if not path.is_file():
        raise r.error(key, f"not a file: {path}")
    try:
        with path.open("rb") as src:
            src.read(1)
    except OSError as exc:
        raise r.error(key, f"cannot read {path}: {exc.strerror}") from None
    return path


def find_config(option: str | None) -> Path:
    """--config, else $TOMA_CONFIG, else ./config.toml."""
    return Path(option or os.environ.get("TOMA_CONFIG") or "config.toml")
