"""A tick's messages shared out among the senders (see :mod:`toma.config.senders`).

Each message goes out from the sender who owns its contact (a notice: the sender it
is for), through a transport made from that sender's config, so each sender has its
own pool of connections and its own rate. A message whose contact names a sender
config.toml does not have is held: it is not written ``sending``, so it is planned
again at every tick until the sender is added or the contact given to another
(``toma check`` names them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from toma.config import Config
from toma.config.senders import each_sender, route, sender_config
from toma.core.contacts import Contact
from toma.core.outbox import OutboxRecord
from toma.daemon.sending import Outgoing


def owners_of(contacts: Iterable[Contact]) -> dict[str, str]:
    """Each contact's ``owner`` field, for the contacts that have one."""
    return {contact.email: contact.owner for contact in contacts if contact.owner}


def split(
    outgoing: Outgoing, owners: Mapping[str, str], config: Config
) -> tuple[list[tuple[Config, Outgoing]], list[OutboxRecord]]:
    """``outgoing`` as one :class:`Outgoing` per sender, with the config that sender sees
    (the default sender first), and the records held for want of their sender."""
    routes = route({r.contact for r in outgoing.records.values()}, owners, config)
    parts: dict[str, Outgoing] = {}
    held: list[OutboxRecord] = []
    where: dict[str, Outgoing] = {}
    for key, record in outgoing.records.items():
        sender = routes[record.contact]
        if sender is None:
            held.append(record)
            continue
        part = parts.setdefault(sender, Outgoing())
        part.records[key] = record
        where[key] = part
    for job in outgoing.jobs:
        if job.key in where:
            where[job.key].jobs.append(job)
    for envelope in outgoing.prebuilt:
        if envelope.key in where:
            where[envelope.key].prebuilt.append(envelope)
    ordered = sorted(parts.items(), key=lambda item: item[0] != "")
    return [(sender_config(config, sender), part) for sender, part in ordered], held


def notice_config(config: Config, to: str, contacts: Mapping[str, Contact]) -> Config:
    """The config a notice to ``to`` is composed with: the sender it is for, or the sender
    owning the contact it goes to (the default when that sender is unknown)."""
    owners = {to: contacts[to].owner} if to in contacts and contacts[to].owner else {}
    sender = route([to], owners, config)[to]
    return sender_config(config, sender or "")


def first(outgoing: Outgoing, count: int) -> tuple[Outgoing, int]:
    """The first ``count`` messages of ``outgoing`` (in the order the tick made them:
    invoice mail, then sequences, newsletters and notices), and how many were left out.
    Those left out are not written ``sending``: they are planned again next tick."""
    keys = list(outgoing.records)[:count]
    kept = Outgoing(records={key: outgoing.records[key] for key in keys})
    kept.jobs = [job for job in outgoing.jobs if job.key in kept.records]
    kept.prebuilt = [envelope for envelope in outgoing.prebuilt if envelope.key in kept.records]
    return kept, len(outgoing.records) - len(keys)


def day_limited(config: Config) -> bool:
    """Whether any sender's SMTP account has a daily limit (``[smtp] per_day``) to count."""
    return config.transport.kind == "smtp" and any(
        view.smtp.per_day > 0 for view in each_sender(config)
    )
