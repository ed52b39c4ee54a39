"""Small projects on disk for the daemon tests: config, one sequence, contacts."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from toma.config import Smtp
from toma.core.contacts import make_contact
from toma.daemon.worker import Worker
from toma.store import CONTACTS, open_store
from toma.timeutil import iso

POSTAL_ADDRESS = "Example Consulting, Hauptstraße 1, 10115 Berlin"  # every footer shows it
TEMPLATE = """---
subject: "Hello {{ contact.first_name }}"
---
Hi {{ contact.first_name }},

just keeping in touch.

{{ sender.first_name }}
"""


def make_project(
    folder: Path,
    *,
    smtp: Smtp | None = None,
    contacts: int = 0,
    tag: str = "friend",
    window: tuple[str, str] = ("00:00", "23:59"),
    steps: tuple[tuple[str, str], ...] = (("hello", "0h"),),
    now: datetime,
) -> Path:
    """A project whose one sequence sends to every contact tagged ``tag``."""
    folder.mkdir(parents=True, exist_ok=True)
    transport = '[transport]\nkind = "maildir"\npath = "var/outbox"\n'
    if smtp is not None:
        transport = (
            '[transport]\nkind = "smtp"\n\n[smtp]\n'
            f'host = "{smtp.host}"\nport = {smtp.port}\nsecurity = "{smtp.security}"\n'
            f"concurrency = {smtp.concurrency}\nrate_per_minute = {smtp.rate_per_minute}\n"
            f'timeout = {smtp.timeout}\nretry_for = "1h"\n'
        )
    (folder / "config.toml").write_text(
        '[owner]\nname = "Alex Example"\nemail = "alex@example.com"\n'
        'timezone = "Europe/Berlin"\n'
        f'postal_address = "{POSTAL_ADDRESS}"\n\n'
        f"{transport}\n"
        '[windows.default]\ndays = ["mon","tue","wed","thu","fri","sat","sun"]\n'
        f'start = "{window[0]}"\nend = "{window[1]}"\n',
        encoding="utf-8",
    )
    (folder / "sequences").mkdir(exist_ok=True)
    step_text = "".join(
        f'[[steps]]\nid = "{step_id}"\nafter = "{after}"\ntemplate = "hello.md"\n\n'
        for step_id, after in steps
    )
    (folder / "sequences" / "keep.toml").write_text(
        f'name = "keep"\nenroll_tag = "{tag}"\non_reply = "stop"\nwindow = "default"\n\n'
        + step_text,
        encoding="utf-8",
    )
    (folder / "templates" / "layouts").mkdir(parents=True, exist_ok=True)
    (folder / "templates" / "hello.md").write_text(TEMPLATE, encoding="utf-8")
    (folder / "templates" / "layouts" / "default.html").write_text(
        "<html><body>{{ body }}</body></html>\n", encoding="utf-8"
    )
    if contacts:
        add_contacts(folder, contacts, tag=tag, now=now)
    return folder / "config.toml"


def add_contacts(folder: Path, count: int, *, tag: str, now: datetime, start: int = 0) -> None:
    store = open_store(folder / "var" / "data")
    try:
        with store.transaction() as tx:
            for number in range(start, start + count):
                contact = make_contact(
                    f"person{number}@example.org",
                    first_name=f"P{number}",
                    tags=[tag],
                    added_at=iso(now),
                )
                tx.put(CONTACTS, contact.email, contact.to_doc())
    finally:
        store.close()


def recipient(number: int) -> str:
    return f"person{number}@example.org"


def tick(config: Path, now: datetime) -> None:
    """One tick of the daemon on the project of ``config``, which must raise no problem."""
    with open_store(config.parent / "var" / "data") as store:
        report = Worker(config, store).run_once(now)
        assert not report.problems, report.problems


def table(config: Path, name: str) -> dict[str, dict[str, Any]]:
    """Every document of one table of the project's store, by key."""
    with open_store(config.parent / "var" / "data") as store:
        return dict(store.all(name))
