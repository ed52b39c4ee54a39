"""One function per section of config.toml: its keys, defaults and rules.

Each takes the :class:`~toma.config.reader.Reader` and the whole parsed file (a section's
rules may look at another's, as ``[transport] kind = "smtp"`` needs ``[smtp]``) and
returns that section's frozen value. A new section is a new function here and one line
in :func:`toma.config.load.parse_config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from toma.config.model import (
    DEFAULT_WINDOW_KEYS,
    MAX_CONCURRENCY,
    MAX_RATE_PER_MINUTE,
    Daemon,
    Dashboard,
    Imap,
    Inbox,
    Invoices,
    InvoiceStage,
    Owner,
    Pace,
    Paths,
    Secret,
    Smtp,
    StoreSettings,
    TransportSettings,
    Unsubscribing,
    Window,
)
from toma.config.reader import (
    Reader,
    parse_address,
    parse_clock,
    parse_days,
    parse_listen,
    read_ca_file,
    read_interval,
    read_port,
    read_positive,
    read_secret,
    read_since,
    read_timeout,
    read_whole,
)
from toma.config.signin import read_auth, read_oauth2, read_provider
from toma.errors import ConfigError
from toma.timeutil import parse_duration, zone


def owner(r: Reader, raw: Mapping[str, Any]) -> Owner:
    """[owner]"""
    if "owner" not in raw:
        raise ConfigError("[owner] is missing: who sends the mail? (name, email)", file=r.file)
    t = r.table(raw, "owner", {"name", "email", "timezone", "postal_address", "signature"})
    found = Owner(
        name=r.get(t, "owner", "name", str, required=True),
        email=r.convert(
            "owner", "email", r.get(t, "owner", "email", str, required=True), parse_address
        ),
        timezone=r.get(t, "owner", "timezone", str, "UTC"),
        postal_address=r.get(t, "owner", "postal_address", str, ""),
        signature=r.get(t, "owner", "signature", str, ""),
    )
    r.convert("owner", "timezone", found.timezone, zone)
    return found


def transport(r: Reader, raw: Mapping[str, Any]) -> TransportSettings:
    """[transport]"""
    t = r.table(raw, "transport", {"kind", "path"})
    kind = r.get(t, "transport", "kind", str, "maildir")
    if kind not in ("maildir", "smtp"):
        raise r.error("transport.kind", f'kind must be "maildir" or "smtp", got {kind!r}')
    return TransportSettings(
        kind=kind, path=r.path(r.get(t, "transport", "path", str, "var/outbox"))
    )


def smtp(
    r: Reader,
    raw: Mapping[str, Any],
    *,
    within: Mapping[str, Any] | None = None,
    section: str = "smtp",
) -> Smtp:
    """[smtp], or a sender's own (``section`` in the table ``within``: see toma.config.senders)"""
    t = r.table(
        raw if within is None else within,
        section,
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
            "per_day",
            "timeout",
            "retry_for",
            "ca_file",
            "provider",
            "auth",
        },
    )
    found = read_provider(r, t, section)
    security = r.get(t, section, "security", str, found.smtp_security if found else "starttls")
    if security not in ("starttls", "tls", "none"):
        raise r.error(
            f"{section}.security", f'security must be "starttls", "tls" or "none", got {security!r}'
        )
    port = {"tls": 465, "starttls": 587, "none": 25}[security]
    if found and security == found.smtp_security:
        port = found.smtp_port
    username = r.get(t, section, "username", str)
    auth = read_auth(r, t, section, found)
    data = paths(r, raw).data
    return Smtp(
        host=r.get(t, section, "host", str, found.smtp_host if found else "localhost"),
        port=read_port(r, t, section, port),
        security=security,
        username=username,
        password=read_secret(r, t, section),
        concurrency=read_whole(r, t, section, "concurrency", 4, most=MAX_CONCURRENCY),
        rate_per_minute=read_whole(
            r,
            t,
            section,
            "rate_per_minute",
            found.rate_per_minute if found else 600,
            most=MAX_RATE_PER_MINUTE,
        ),
        per_day=read_per_day(r, t, section, found.per_day if found else 0),
        timeout=read_timeout(r, t, section, 30.0),
        retry_for=r.convert(
            section, "retry_for", r.get(t, section, "retry_for", str, "1h"), parse_duration
        ),
        ca_file=read_ca_file(r, t, section),
        provider=found.name if found else "",
        auth=auth,
        oauth2=read_oauth2(r, raw, section, auth=auth, username=username, found=found, data=data),
    )


def read_per_day(r: Reader, t: Mapping[str, Any], section: str, default: int) -> int:
    """``per_day``: the provider's daily limit (0: none), at most MAX_RATE_PER_MINUTE a day."""
    value: int = r.get(t, section, "per_day", int, default)
    if not 0 <= value <= MAX_RATE_PER_MINUTE:
        raise r.error(
            f"{section}.per_day",
            f"per_day must be between 0 (no daily limit) and {MAX_RATE_PER_MINUTE}, got {value}",
        )
    return value


def inbox(r: Reader, raw: Mapping[str, Any], owner_zone: str) -> Inbox:
    """[inbox]"""
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
    return Inbox(
        kind=kind,
        path=r.path(r.get(t, "inbox", "path", str, "var/inbox")),
        notify=notify,
        digest_at=r.convert(
            "inbox", "digest_at", r.get(t, "inbox", "digest_at", str, "08:00"), parse_clock
        ),
        soft_bounce_limit=read_positive(r, t, "inbox", "soft_bounce_limit", 3),
        unsubscribe_address=(
            r.convert("inbox", "unsubscribe_address", unsubscribe_address, parse_address)
            if unsubscribe_address
            else ""
        ),
        since=read_since(r, t, owner_zone),
    )


def imap(
    r: Reader,
    raw: Mapping[str, Any],
    *,
    within: Mapping[str, Any] | None = None,
    section: str = "imap",
) -> Imap:
    """[imap], or a sender's own (``section`` in the table ``within``: see toma.config.senders)"""
    holder = raw if within is None else within
    t = r.table(
        holder,
        section,
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
            "folders",
            "sent_folder",
            "sent_copy",
            "read_sent",
            "provider",
            "auth",
        },
    )
    found = read_provider(r, t, section)
    isecurity = r.get(t, section, "security", str, found.imap_security if found else "tls")
    if isecurity not in ("starttls", "tls", "none"):
        raise r.error(
            f"{section}.security",
            f'security must be "tls", "starttls" or "none", got {isecurity!r}',
        )
    port = 993 if isecurity == "tls" else 143
    if found and isecurity == found.imap_security:
        port = found.imap_port
    username = r.get(t, section, "username", str)
    auth = read_auth(r, t, section, found)
    smtp_raw = holder.get("smtp", {})
    same_provider = (
        found is not None
        and isinstance(smtp_raw, Mapping)
        and smtp_raw.get("provider") == found.name
        and isinstance(raw.get("transport"), Mapping)
        and raw["transport"].get("kind") == "smtp"
    )
    return Imap(
        host=r.get(t, section, "host", str, found.imap_host if found else "localhost"),
        port=read_port(r, t, section, port),
        security=isecurity,
        username=username,
        password=read_secret(r, t, section),
        folder=r.get(t, section, "folder", str, "INBOX"),
        ca_file=read_ca_file(r, t, section),
        idle=r.get(t, section, "idle", bool, True),
        poll_every=read_interval(r, t, section, "poll_every", "5min"),
        folders=_folders(r, t, section),
        sent_folder=r.get(t, section, "sent_folder", str, ""),
        sent_copy=_sent_copy(r, t, section),
        read_sent=r.get(t, section, "read_sent", bool, True),
        provider=found.name if found else "",
        auth=auth,
        oauth2=read_oauth2(
            r, raw, section, auth=auth, username=username, found=found, data=paths(r, raw).data
        ),
        provider_sent_folder=found.sent_folder if found else "",
        files_sent_itself=same_provider and found is not None and found.files_sent_itself,
    )


SENT_COPY = ("auto", "always", "never")


def _folders(r: Reader, t: Mapping[str, Any], section: str) -> tuple[str, ...]:
    """[imap] folders: a list of folder names, each once; empty means ``folder`` alone."""
    raw = r.get(t, section, "folders", list, [])
    folders: list[str] = []
    for name in raw:
        if not isinstance(name, str) or not name.strip():
            raise r.error(
                f"{section}.folders", f"folders must be a list of folder names, got {name!r}"
            )
        if name in folders:
            raise r.error(f"{section}.folders", f"the folder {name!r} is named twice in folders")
        folders.append(name)
    if "folders" in t and "folder" in t:
        raise r.error(f"{section}.folders", "set folders (several) or folder (one), not both")
    return tuple(folders)


def _sent_copy(r: Reader, t: Mapping[str, Any], section: str) -> str:
    value = r.get(t, section, "sent_copy", str, "auto")
    if value not in SENT_COPY:
        raise r.error(
            f"{section}.sent_copy",
            f'sent_copy must be "auto", "always" or "never", got {value!r}',
        )
    return str(value)


def windows(r: Reader, raw: Mapping[str, Any]) -> dict[str, Window]:
    """[windows.*]"""
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
            r.get(w, section, "days", list, DEFAULT_WINDOW_KEYS["days"]),
            parse_days,
        )
        start = r.convert(
            section,
            "start",
            r.get(w, section, "start", str, DEFAULT_WINDOW_KEYS["start"]),
            parse_clock,
        )
        end = r.convert(
            section, "end", r.get(w, section, "end", str, DEFAULT_WINDOW_KEYS["end"]), parse_clock
        )
        if end <= start:
            raise r.error(f"{section}.end", "a window must end after it starts")
        windows[name] = Window(name=name, days=days, start=start, end=end)
    return windows


def pace(r: Reader, raw: Mapping[str, Any]) -> Pace:
    """[pace]"""
    t = r.table(raw, "pace", {"min_gap", "max_late"})
    return Pace(
        min_gap=r.convert(
            "pace", "min_gap", r.get(t, "pace", "min_gap", str, "3d"), parse_duration
        ),
        max_late=r.convert(
            "pace", "max_late", r.get(t, "pace", "max_late", str, "14d"), parse_duration
        ),
    )


def invoices(r: Reader, raw: Mapping[str, Any]) -> Invoices:
    """[invoices]"""
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
        template = r.get(stage, key, "template", str)
        stages.append(InvoiceStage(at=at, template=template))
    return Invoices(
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


def paths(r: Reader, raw: Mapping[str, Any]) -> Paths:
    """[paths]"""
    t = r.table(raw, "paths", {"data", "sequences", "templates", "newsletters"})

    def _p(key: str, default: str) -> Path:
        found = r.path(r.get(t, "paths", key, str, default))
        assert found is not None  # noqa: S101 - a default is always given
        return found

    return Paths(
        data=_p("data", "var/data"),
        sequences=_p("sequences", "sequences"),
        templates=_p("templates", "templates"),
        newsletters=_p("newsletters", "newsletters"),
    )


def daemon(r: Reader, raw: Mapping[str, Any]) -> Daemon:
    """[daemon]"""
    t = r.table(raw, "daemon", {"tick_every"})
    return Daemon(
        tick_every=read_interval(r, t, "daemon", "tick_every", "1min"),
    )


def unsubscribe(r: Reader, raw: Mapping[str, Any]) -> Unsubscribing:
    """[unsubscribe]"""
    t = r.table(raw, "unsubscribe", {"base_url", "listen"})
    base_url = r.get(t, "unsubscribe", "base_url", str, "")
    if base_url:
        from toma.mail.unsubscribe import check_base_url

        base_url = r.convert("unsubscribe", "base_url", base_url, check_base_url)
    return Unsubscribing(
        base_url=base_url,
        listen=r.convert(
            "unsubscribe",
            "listen",
            r.get(t, "unsubscribe", "listen", str, "127.0.0.1:8025"),
            parse_listen,
        ),
    )


def dashboard(r: Reader, raw: Mapping[str, Any]) -> Dashboard:
    """[dashboard]"""
    keys = {
        "serve",
        "listen",
        "password_env",
        "password_file",
        "password",
        "behind_proxy",
        "max_documents",
    }
    t = r.table(raw, "dashboard", keys)
    listen = r.get(t, "dashboard", "listen", str, "")
    secret = read_secret(r, t, "dashboard") if "password_env" in t or "password_file" in t else None
    if "password" in t:
        read_secret(r, t, "dashboard")  # says where a password belongs
    most = r.get(t, "dashboard", "max_documents", int, 200_000)
    if most < 0:
        raise r.error("dashboard.max_documents", f"must be 0 (no limit) or more, got {most}")
    return Dashboard(
        serve=r.get(t, "dashboard", "serve", bool, True),
        listen=r.convert("dashboard", "listen", listen, parse_listen) if listen else None,
        password_hash=secret,
        behind_proxy=r.get(t, "dashboard", "behind_proxy", bool, False),
        max_documents=most,
    )


def store(r: Reader, raw: Mapping[str, Any]) -> StoreSettings:
    """[store]: ``kind = "postgres"`` reads its DSN from ``dsn_env`` or ``dsn_file``.

    A DSN carries a password, so, like one, it never sits in the config itself.
    """
    t = r.table(raw, "store", {"kind", "dsn", "dsn_env", "dsn_file"})
    kind = r.get(t, "store", "kind", str, "embedded")
    if kind not in ("embedded", "postgres"):
        raise r.error("store.kind", f'kind must be "embedded" or "postgres", got {kind!r}')
    if "dsn" in t:
        raise r.error(
            "store.dsn",
            'a DSN holds a password and does not belong in the config: use dsn_env = "VAR" '
            'or dsn_file = "path"',
        )
    env = r.get(t, "store", "dsn_env", str)
    file = r.get(t, "store", "dsn_file", str)
    if env and file:
        raise r.error("store.dsn_file", "give dsn_env or dsn_file, not both")
    if kind == "postgres" and not (env or file):
        raise r.error("store.kind", 'kind = "postgres" needs dsn_env = "VAR" or dsn_file = "path"')
    if kind == "embedded" and (env or file):
        raise r.error(
            "store.dsn_env" if env else "store.dsn_file", 'a DSN goes with kind = "postgres"'
        )
    return StoreSettings(
        kind=kind,
        dsn=Secret(
            env=env,
            file=r.path(file),
            key="store.dsn_env" if env else "store.dsn_file",
            config_file=str(r.file),
        ),
    )
