"""Several senders: ``[[senders]]`` beside ``[owner]``, and the config each of them sees.

Theory of operation
-------------------
``[owner]`` with ``[smtp]`` and ``[imap]`` is the *default sender*: with no
``[[senders]]`` it is the only one, exactly as before. Each ``[[senders]]`` entry
adds another: a name, an address, a signature, a postal address (``[owner]``'s
when not given), a time zone (likewise), and its own ``smtp = {…}`` and
``imap = {…}`` tables, with the keys, provider presets and ``auth`` of
``[smtp]`` and ``[imap]`` (``[oauth2]``, the app registration, is shared; each
sender signs in to its own mailbox, with its own token file).

A sender is known by its address. A contact names its owner in its ``owner``
field; empty, or ``[owner]``'s address, means the default sender.

The rest of toma does not know about senders: it is handed the config *as one
sender sees it* (:func:`sender_config`): that sender's details in
``config.owner`` and its servers in ``config.smtp`` and ``config.imap``. The
daemon sends each sender's messages through a transport of its own made from
that view, reads each sender's mailbox with it (each mailbox has its own
cursors, keyed by server, user and folder), and composes each notice with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from toma.config import sections
from toma.config.model import Config, Owner, SenderSettings
from toma.config.reader import Reader, parse_address
from toma.errors import ConfigError, ContactError
from toma.timeutil import zone

SENDER_KEYS = {"name", "email", "timezone", "postal_address", "signature", "smtp", "imap"}
_HEADER = re.compile(r"^\s*\[\[\s*senders\s*\]\]")
_SAFE = re.compile(r"[^A-Za-z0-9@._+-]")


class _EntryReader(Reader):
    """A :class:`Reader` for the n-th ``[[senders]]`` entry: lines found inside it, and keys
    named ``senders[n].…`` so the user sees which entry is meant."""

    def __init__(self, parent: Reader, index: int) -> None:
        self.file = parent.file
        self.lines = parent.lines
        self.tables = parent.tables  # the keys each table takes, as the parent records them
        self._parent = parent
        self.index = index
        self._start, self._end = _block(parent.lines, index)

    def error(self, key: str, message: str) -> ConfigError:
        shown = key
        if key == "senders" or key.startswith("senders."):
            shown = f"senders[{self.index + 1}]" + key.removeprefix("senders")
        return ConfigError(message, file=self.file, line=self.locate(key), key=shown)

    def locate(self, dotted: str) -> int | None:
        if not (dotted == "senders" or dotted.startswith("senders.")):
            return self._parent.locate(dotted)
        if self._start is None:
            return None
        inner = Reader(self.file, "\n".join(self.lines[self._start : self._end]))
        found = inner.locate(dotted)
        return self._start + found if found is not None else self._start + 1


def _block(lines: list[str], index: int) -> tuple[int | None, int]:
    """The lines (0-based, end excluded) of the ``index``-th ``[[senders]]`` table."""
    starts = [number for number, line in enumerate(lines) if _HEADER.match(line)]
    if index >= len(starts):
        return None, len(lines)
    start = starts[index]
    for number in range(start + 1, len(lines)):
        line = lines[number].strip()
        if not line.startswith("["):
            continue
        name = line.strip("[] \t")
        if _HEADER.match(line) or not name.startswith("senders."):
            return start, number
    return start, len(lines)


def read_senders(
    r: Reader, raw: Mapping[str, Any], owner: Owner, *, transport: str, inbox: str
) -> tuple[SenderSettings, ...]:
    """``[[senders]]``: each entry checked, no address twice (nor ``[owner]``'s)."""
    if "senders" not in raw:
        return ()
    entries = raw["senders"]
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise r.error("senders", "write each sender as a [[senders]] table (name, email, …)")
    found: list[SenderSettings] = []
    seen = {owner.email.lower(): "[owner]"}
    for index, entry in enumerate(entries):
        er = _EntryReader(r, index)
        sender = _sender(er, raw, entry, owner, transport=transport, inbox=inbox)
        address = sender.email.lower()
        if address in seen:
            raise er.error(
                "senders.email", f"{sender.email} is already the address of {seen[address]}"
            )
        seen[address] = f"senders[{index + 1}]"
        found.append(sender)
    return tuple(found)


def _sender(
    r: Reader,
    raw: Mapping[str, Any],
    entry: Mapping[str, Any],
    owner: Owner,
    *,
    transport: str,
    inbox: str,
) -> SenderSettings:
    t = r.table({"senders": entry}, "senders", SENDER_KEYS)
    found = Owner(
        name=r.get(t, "senders", "name", str, required=True),
        email=r.convert(
            "senders", "email", r.get(t, "senders", "email", str, required=True), parse_address
        ),
        timezone=r.get(t, "senders", "timezone", str, owner.timezone),
        postal_address=r.get(t, "senders", "postal_address", str, owner.postal_address),
        signature=r.get(t, "senders", "signature", str, ""),
    )
    r.convert("senders", "timezone", found.timezone, zone)
    # Each sender sends through its own server and reads its own mailbox: none borrows
    # [owner]'s, which would send as one person through another's account.
    if transport == "smtp" and "smtp" not in t:
        raise r.error("senders", 'with [transport] kind = "smtp" each sender needs smtp = { … }')
    if inbox == "imap" and "imap" not in t:
        raise r.error("senders", 'with [inbox] kind = "imap" each sender needs imap = { … }')
    return SenderSettings(
        owner=found,
        smtp=sections.smtp(r, raw, within=t, section="senders.smtp"),
        imap=sections.imap(r, raw, within=t, section="senders.imap"),
    )


# --- the config as one sender sees it (pure) ---------------------------------


def default_of(config: Config) -> SenderSettings:
    """``[owner]`` and its servers, whichever sender ``config`` speaks for."""
    if config.default_sender is not None:
        return config.default_sender
    return SenderSettings(owner=config.owner, smtp=config.smtp, imap=config.imap)


def sender_addresses(config: Config) -> tuple[str, ...]:
    """Every sender's address, the default (``[owner]``) first."""
    return (default_of(config).email, *(s.email for s in config.senders))


def find_sender(config: Config, address: str) -> SenderSettings | None:
    wanted = address.strip().lower()
    return next((s for s in config.senders if s.email.lower() == wanted), None)


def resolve_sender(config: Config, text: str) -> str:
    """The sender ``text`` names (an address, or a name no other sender has): "" for
    ``[owner]``, else its address. :class:`ConfigError` lists the senders otherwise."""
    wanted = text.strip().lower()
    default = default_of(config).owner
    everyone = (default, *(s.owner for s in config.senders))
    by_address = [o for o in everyone if o.email.lower() == wanted]
    by_name = [o for o in everyone if o.name.lower() == wanted]
    found = by_address or (by_name if len(by_name) == 1 else [])
    if not found:
        known = ", ".join(f"{o.name} <{o.email}>" for o in everyone)
        raise ConfigError(f"no sender is {text!r}: the senders are {known}", file=config.file)
    return "" if found[0] is default else found[0].email


def owner_key(config: Config, owner: str) -> str | None:
    """The sender a contact's ``owner`` field names: "" for the default, its address for
    another, None when no sender has that address."""
    wanted = owner.strip().lower()
    if not wanted or wanted == default_of(config).email.lower():
        return ""
    found = find_sender(config, wanted)
    return found.email if found is not None else None


def notice_to(config: Config, owner: str) -> str:
    """Where the notice about a contact whose ``owner`` field this is goes: its sender's
    address; for an owner no sender has, the sender ``config`` speaks for (whose
    mailbox the mail came into)."""
    key = owner_key(config, owner)
    if key is None:
        return config.owner.email
    return key or default_of(config).email


def sender_config(config: Config, sender: str) -> Config:
    """``config`` as the sender ``sender`` (its address; "" for ``[owner]``) sees it."""
    default = default_of(config)
    if not sender or sender.lower() == default.email.lower():
        if not config.sender:
            return config
        return replace(
            config,
            owner=default.owner,
            smtp=default.smtp,
            imap=default.imap,
            sender="",
            default_sender=None,
        )
    found = find_sender(config, sender)
    if found is None:
        raise ConfigError(f"no sender has the address {sender}", file=config.file, key="senders")
    return replace(
        config,
        owner=found.owner,
        smtp=found.smtp,
        imap=found.imap,
        sender=found.email,
        default_sender=default,
    )


def each_sender(config: Config) -> tuple[Config, ...]:
    """The config as each sender sees it, the default first."""
    base = sender_config(config, "")
    return (base, *(sender_config(base, s.email) for s in config.senders))


def route(
    contacts: Iterable[str], owners: Mapping[str, str], config: Config
) -> dict[str, str | None]:
    """Whose mail each address in ``contacts`` is: a sender (its own notices), or the sender
    owning that contact ("" the default; None an owner no sender has). ``owners`` maps a
    contact's address to its ``owner`` field."""
    addresses = {a.lower(): ("" if i == 0 else a) for i, a in enumerate(sender_addresses(config))}
    result: dict[str, str | None] = {}
    for contact in contacts:
        own = addresses.get(contact.lower())
        result[contact] = own if own is not None else owner_key(config, owners.get(contact, ""))
    return result


def unknown_owners(config: Config, owners: Iterable[tuple[str, str]]) -> list[ContactError]:
    """A problem for each sender that contacts are given to and config.toml does not have;
    ``owners`` is (contact, its owner field) for each contact."""
    lost: dict[str, list[str]] = {}
    for contact, owner in owners:
        if owner and owner_key(config, owner) is None:
            lost.setdefault(owner, []).append(contact)
    problems = []
    for owner, contacts in sorted(lost.items()):
        shown = ", ".join(contacts[:3]) + (
            f" and {len(contacts) - 3} more" if len(contacts) > 3 else ""
        )
        problems.append(
            ContactError(
                f"owned by {owner}, which is not a sender in {config.file.name} "
                f"([owner] or [[senders]]): their mail is held ({len(contacts)}: {shown}); "
                "add the sender or `toma contacts assign … --to` another",
                contact=contacts[0],
            )
        )
    return problems


def spool_name(config: Config, base: str) -> str:
    """A folder name for what belongs to one sender: ``base`` for the default."""
    return f"{base}-{_SAFE.sub('_', config.sender.lower())}" if config.sender else base
