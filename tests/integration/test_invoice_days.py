"""Invoice reminders read true on the day they go out, whichever day that is.

The daemon's tick, the project's own example templates, the Maildir outbox.
"""

from __future__ import annotations

import email
import json
import shutil
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest

from toma.core.invoices import Invoice, pause_reminders
from toma.store import INVOICES, open_store

from .projects import make_project
from .test_inbox_trust import JONAS, outbox, tick, toma

pytestmark = pytest.mark.timeout(60)

SUNDAY = datetime(2026, 12, 13, 10, 0, tzinfo=UTC)  # the due date
MONDAY = datetime(2026, 12, 14, 9, 30, tzinfo=UTC)


def project(tmp_path: Path) -> Path:
    config = make_project(tmp_path, now=SUNDAY, tag="nobody")
    config.write_text(
        config.read_text()
        .replace(
            'days = ["mon","tue","wed","thu","fri","sat","sun"]',
            'days = ["mon","tue","wed","thu","fri"]',
        )
        .replace(
            "[windows.default]",
            '[invoices]\nstages = [{ at = "-3d", template = '
            '"invoices/before-due.md" }, { at = "0d", template = '
            '"invoices/on-the-day.md" }]\n\n[windows.default]',
        )
    )
    scaffold = resources.files("toma.project") / "starter" / "templates" / "invoices"
    (tmp_path / "templates" / "invoices").mkdir()
    for name in ("before-due.md", "on-the-day.md"):
        with resources.as_file(scaffold / name) as path:
            shutil.copy(path, tmp_path / "templates" / "invoices" / name)
    assert (
        toma(
            config, "contacts", "add", JONAS, "--first-name", "Jonas", "--timezone", "Europe/Berlin"
        ).exit_code
        == 0
    )  # type: ignore[attr-defined]
    result = toma(
        config,
        "invoices",
        "add",
        "2026-041",
        "--contact",
        JONAS,
        "--amount",
        "100",
        "--currency",
        "EUR",
        "--issued",
        "2026-11-13",
        "--due",
        "2026-12-13",
        "--now",
        "2026-11-13T10:00:00+00:00",
    )
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    return config


def text_of(message: email.message.EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return " ".join(str(part.get_content()).split())


def test_a_reminder_for_a_sunday_goes_on_monday_and_says_so(tmp_path: Path) -> None:
    config = project(tmp_path)
    tick(config, datetime(2026, 12, 10, 9, 30, tzinfo=UTC))  # Thursday: three days before
    (before,) = outbox(config)
    assert "is due in 3 days, on Sunday, December 13, 2026." in text_of(before)
    tick(config, SUNDAY)  # the due date: outside Jonas's working days
    assert len(outbox(config)) == 1
    tick(config, MONDAY)
    late = [m for m in outbox(config) if m["Message-ID"] != before["Message-ID"]]
    assert len(late) == 1
    body, subject = text_of(late[0]), str(late[0]["Subject"])
    assert "was due yesterday, Sunday, December 13, 2026." in body
    assert "due today" not in body and "due today" not in subject
    assert subject == "Invoice 2026-041 was due yesterday"
    assert toma(config, "check").exit_code == 0  # type: ignore[attr-defined]


def test_the_next_reminder_in_invoices_list_is_the_one_toma_plan_shows(tmp_path: Path) -> None:
    """A reply paused the reminders until Tuesday: before, `invoices list` names the stage
    that goes when the pause ends, as `toma plan` does; after it went, it names nothing
    (not a pause long over), as `toma plan` does."""
    config = project(tmp_path)
    store = open_store(tmp_path / "var" / "data")
    try:
        with store.transaction() as tx:
            tx.put(
                INVOICES,
                "2026-041",
                pause_reminders(
                    Invoice.from_doc(tx.get(INVOICES, "2026-041")),
                    datetime(2026, 12, 15, 8, 0, tzinfo=UTC),
                ).to_doc(),
            )
    finally:
        store.close()
    for day in (9, 14, 16):
        now = datetime(2026, 12, day, 9, 30, tzinfo=UTC)
        tick(config, now)
        listed = json.loads(
            str(toma(config, "invoices", "list", "--json", "--now", now.isoformat()).output)
        )  # type: ignore[attr-defined]
        planned = json.loads(
            str(toma(config, "plan", "--json", "--days", "400", "--now", now.isoformat()).output)
        )  # type: ignore[attr-defined]
        (row,) = listed["rows"]
        shown = row["next_reminder"]
        first = next((p for p in planned if p["kind"] == "invoice"), None)
        assert (shown and (f"2026-041/{shown['stage']}", shown["at"])) == (
            first and (first["ref"], first["at"])
        ), day
        text = str(toma(config, "invoices", "list", "--now", now.isoformat()).output)  # type: ignore[attr-defined]
        if day == 16:
            assert first is None and "paused" not in text
        else:
            assert first is not None and first["at"].startswith("2026-12-15T09:00")
            assert "0d 2026-12-15 09:00 (paused until 2026-12-15)" in text
