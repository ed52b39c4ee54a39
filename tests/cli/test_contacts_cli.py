"""`toma contacts …` as a user would type it."""

from __future__ import annotations

import json
from pathlib import Path

from toma import open_store
from toma.core.suppression import Reason
from toma.store.records.contacts import suppression_of

from .conftest import Invoke


def rows_csv(tmp_path: Path, bad_row: int) -> Path:
    lines = ["email,first_name,last_name,tags,met_where"]
    for number in range(1, 13):
        address = "bad address" if number == bad_row else f"person{number}@example.org"
        lines.append(f"{address},First{number},Last{number},met,the fair")
    path = tmp_path / "people.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def emails(toma: Invoke, *args: str) -> set[str]:
    return {c["email"] for c in json.loads(toma("contacts", "list", "--json", *args).output)}


def test_import_reports_row_7_and_imports_the_rest(tmp_path: Path, toma: Invoke) -> None:
    result = toma("contacts", "import", str(rows_csv(tmp_path, bad_row=7)))
    assert result.exit_code == 1  # a problem was reported
    assert "people.csv:8: row 7: 'bad address' is not an email address" in result.output
    assert "11 added" in result.output
    imported = emails(toma, "--tag", "met") - emails(toma, "--tag", "client")
    assert {f"person{n}@example.org" for n in range(1, 13) if n != 7} <= imported
    assert "person7@example.org" not in imported


def test_reimport_keeps_an_unsubscribed_contact_unsubscribed(tmp_path: Path, toma: Invoke) -> None:
    path = rows_csv(tmp_path, bad_row=0)
    toma("contacts", "import", str(path))
    assert toma("contacts", "unsubscribe", "person3@example.org").exit_code == 0
    toma("contacts", "import", str(path))
    shown = json.loads(toma("contacts", "show", "person3@example.org", "--json").output)
    assert shown["status"] == "unsubscribed"
    result = toma("contacts", "resume", "person3@example.org")
    assert result.exit_code == 1
    assert "only the person can undo that" in result.output


def test_add_tag_pause_resume_forget(toma: Invoke) -> None:
    assert (
        toma(
            "contacts",
            "add",
            "New@Example.org",
            "--first-name",
            "Nia",
            "--tag",
            "met",
            "--field",
            "met_where=Oslo",
            "--timezone",
            "Europe/Oslo",
        ).exit_code
        == 0
    )
    assert "Updated" in toma("contacts", "add", "new@example.org", "--company", "Nia AS").output
    shown = json.loads(toma("contacts", "show", "new@example.org", "--json").output)
    assert (shown["first_name"], shown["company"], shown["fields"]) == (
        "Nia",
        "Nia AS",
        {"met_where": "Oslo"},
    )
    toma("contacts", "tag", "new@example.org", "vip", "client")
    toma("contacts", "untag", "new@example.org", "met")
    assert json.loads(toma("contacts", "show", "new@example.org", "--json").output)["tags"] == [
        "vip",
        "client",
    ]
    assert "paused" in toma("contacts", "pause", "new@example.org").output
    assert "active" in toma("contacts", "resume", "new@example.org").output
    assert toma("contacts", "forget", "new@example.org", "--yes").exit_code == 0
    assert "new@example.org" not in emails(toma)


def test_add_with_header_injection_in_a_name_is_refused(toma: Invoke) -> None:
    result = toma(
        "contacts", "add", "eve@example.org", "--first-name", "Eve\r\nBcc: someone@example.com"
    )
    assert result.exit_code == 1
    assert "single line" in result.output


def test_list_on_a_pipe_is_tab_separated(toma: Invoke) -> None:
    lines = toma("contacts", "list").output.splitlines()
    assert lines[0].split("\t") == ["email", "name", "company", "status", "tags"]
    assert len(lines) == 6


# --- the suppression list ------------------------------------------------------

MIRA = "mira.keller@example.org"


def planned_for(toma: Invoke, address: str, now: str) -> list[dict[str, str]]:
    rows = json.loads(toma("plan", "--json", "--now", now).output)
    return [row for row in rows if row["contact"] == address]


def store_bytes(project: Path) -> bytes:
    data = project / "var" / "data"
    return b"".join(path.read_bytes() for path in sorted(data.iterdir()) if path.is_file())


def test_forget_then_reimport_does_not_resubscribe(project: Path, toma: Invoke) -> None:
    """unsubscribe; forget; import the same file: Mira stays out, and nothing is due for her."""
    now = "2026-11-25T11:00:00+00:00"
    samples = str(project / "samples" / "contacts.csv")
    assert toma("run", "--once", "--now", now).exit_code == 0  # she is enrolled by her tag
    assert toma("contacts", "unsubscribe", MIRA.upper()).exit_code == 0
    assert toma("contacts", "forget", MIRA, "--yes").exit_code == 0
    assert MIRA not in emails(toma)

    result = toma("contacts", "import", samples, "--now", now)
    assert result.exit_code == 0, result.output
    assert f"{MIRA}: on the suppression list (unsubscribed" in result.output
    assert "0 added" in result.output and "1 suppressed" in result.output
    assert MIRA not in emails(toma)
    assert planned_for(toma, MIRA, now) == []
    assert toma("run", "--once", "--now", now).exit_code == 0
    assert MIRA not in emails(toma)  # the tick's tag enrolment made nothing of her either

    added = toma("contacts", "add", "Mira.Keller@Example.org", "--first-name", "Mira")
    assert added.exit_code == 1
    assert "on the suppression list" in added.output
    assert MIRA not in emails(toma)


def test_forget_keeps_no_address_but_keeps_the_objection(project: Path, toma: Invoke) -> None:
    """After forget, the store files hold no trace of the address, yet she stays suppressed."""
    assert toma("contacts", "unsubscribe", MIRA).exit_code == 0
    assert MIRA.encode() in store_bytes(project)
    assert toma("contacts", "forget", MIRA, "--yes").exit_code == 0
    kept = store_bytes(project)
    assert b"mira" not in kept.lower() and b"Keller" not in kept
    assert b'"unsubscribed"' in kept  # the suppression entry: a keyed hash and a reason
    assert toma("contacts", "add", MIRA).exit_code == 1


def test_forgetting_an_active_contact_suppresses_too(project: Path, toma: Invoke) -> None:
    """An erasure request means "never again": a plain forget also suppresses."""
    assert toma("contacts", "forget", "jonas.brandt@example.net", "--yes").exit_code == 0
    result = toma("contacts", "import", str(project / "samples" / "contacts.csv"))
    assert "jonas.brandt@example.net: on the suppression list (forgotten" in result.output
    assert "jonas.brandt@example.net" not in emails(toma)


def test_a_suppressed_contact_still_stored_cannot_come_back(project: Path, toma: Invoke) -> None:
    """Unsubscribed (not forgotten): a re-import updates her fields but never her status,
    and she cannot be enrolled by hand."""
    assert toma("contacts", "unsubscribe", MIRA).exit_code == 0
    result = toma("contacts", "import", str(project / "samples" / "contacts.csv"))
    assert result.exit_code == 0, result.output
    shown = json.loads(toma("contacts", "show", MIRA, "--json").output)
    assert shown["status"] == "unsubscribed"
    enrolled = toma("enroll", MIRA, "new-acquaintance")
    assert enrolled.exit_code == 1
    assert "unsubscribed" in enrolled.output


def test_an_unsubscribe_by_email_outlives_forget(project: Path, toma: Invoke) -> None:
    """Mira asks by email to stop; forgotten, then re-imported, she stays out."""
    now = "2026-11-25T11:00:00+00:00"
    inbox = project / "var" / "inbox" / "new"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "1764068400.M1P1.host").write_bytes(
        f"From: Mira Keller <{MIRA}>\r\nTo: owner@example.com\r\nSubject: unsubscribe\r\n"
        "Message-ID: <stop-1@example.org>\r\nDate: Tue, 25 Nov 2026 10:00:00 +0000\r\n\r\n"
        "Please take me off your list.\r\n".encode()
    )
    assert toma("inbox", "sync", "--now", now).exit_code == 0
    assert json.loads(toma("contacts", "show", MIRA, "--json").output)["status"] == "unsubscribed"
    with open_store(project / "var" / "data") as store:  # on the list before any forget
        entry = suppression_of(store, MIRA)
    assert entry is not None and entry.reason is Reason.UNSUBSCRIBED
    assert toma("contacts", "forget", MIRA, "--yes").exit_code == 0

    result = toma("contacts", "import", str(project / "samples" / "contacts.csv"), "--now", now)
    assert f"{MIRA}: on the suppression list (unsubscribed" in result.output
    assert MIRA not in emails(toma)
