"""Every command a script reads takes --json, and what it prints is JSON with the figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import Result

from .conftest import Invoke

NOW = "2026-11-25T15:00:00+00:00"  # a Wednesday afternoon: the samples have mail due
ISSUE = "2026-12-year-in-review.md"


def parsed(result: Result, status: int = 0) -> Any:
    assert result.exit_code == status, result.output
    return json.loads(result.stdout)


def test_check(toma: Invoke, project: Path) -> None:
    good = parsed(toma("check", "--json"))
    assert good["ok"] is True
    assert good["problems"] == []
    assert good["contacts"] == 5
    (project / "sequences" / "broken.toml").write_text('name = "broken"\nsteps = 3\n')
    bad = parsed(toma("check", "--json"), status=1)
    assert bad["ok"] is False
    assert any(p["file"] and p["file"].endswith("broken.toml") for p in bad["problems"])


def test_contacts_import(toma: Invoke, tmp_path: Path) -> None:
    rows = tmp_path / "people.csv"
    rows.write_text("email,first_name\nnew@example.org,New\nnot-an-address,Bad\n")
    report = parsed(toma("contacts", "import", str(rows), "--json"), status=1)
    assert report["added"] == 1
    assert [p["line"] for p in report["problems"]] == [3]
    assert report["problems"][0]["file"] == str(rows)


def test_invoices_import(toma: Invoke, project: Path) -> None:
    report = parsed(
        toma(
            "invoices", "import", str(project / "samples" / "invoices.csv"), "--json", "--now", NOW
        )
    )
    assert report["added"] == 0  # toma init imported the samples already
    assert report["existing"] >= 2
    assert report["problems"] == []


def test_inbox_sync(toma: Invoke, project: Path) -> None:
    message = (
        "From: Mira Keller <mira.keller@example.org>\r\nTo: you@example.com\r\n"
        "Subject: hello\r\nMessage-ID: <a1@example.org>\r\n"
        "Date: Wed, 25 Nov 2026 14:00:00 +0000\r\n\r\nHi, nice to hear from you.\r\n"
    )
    for sub in ("new", "cur", "tmp"):
        (project / "var" / "inbox" / sub).mkdir(parents=True, exist_ok=True)
    (project / "var" / "inbox" / "new" / "1.mira").write_text(message)
    report = parsed(toma("inbox", "sync", "--json", "--now", NOW))
    assert report["fetched"] == 1
    assert report["recorded"] + report["aside"] == 1
    assert sum(report["by_kind"].values()) == report["recorded"]


def test_enroll(toma: Invoke) -> None:
    done = parsed(
        toma("enroll", "mira.keller@example.org", "after-project", "--json", "--now", NOW)
    )
    assert done == {
        "contact": "mira.keller@example.org",
        "sequence": "after-project",
        "enrolled_at": NOW,
    }


def test_newsletter_proof_and_send(toma: Invoke, project: Path) -> None:
    proof = parsed(toma("newsletter", "proof", ISSUE, "--json", "--now", NOW))
    assert proof["sent"] is True
    assert proof["subject"]
    dry = parsed(toma("newsletter", "send", ISSUE, "--dry-run", "--json", "--now", NOW))
    assert dry["recipients"]
    assert all({"contact", "at", "zone", "now"} <= set(r) for r in dry["recipients"])
    result = toma("newsletter", "send", ISSUE, "--yes", "--json", "--now", NOW)
    assert result.exit_code in (0, 75, 78), result.output
    sent = json.loads(result.stdout)
    assert sent["outcome"] in ("sent", "scheduled")
    if sent["outcome"] == "sent":
        assert sent["sent"] + sent["later"] == len(dry["recipients"])
        assert sent["exit_code"] == result.exit_code


def test_run_once(toma: Invoke) -> None:
    result = toma("run", "--once", "--json", "--now", NOW)
    report = json.loads(result.stdout)
    assert report["exit_code"] == result.exit_code == 0
    assert report["sent"] >= 1
    assert report["now"] == NOW


def test_backup_restore_migrate_export(toma: Invoke, project: Path, tmp_path: Path) -> None:
    archive = tmp_path / "b.tar.gz"
    info = parsed(toma("backup", str(archive), "--json"))
    assert "unsubscribe.key" in info["files"] or info["files"]
    assert info["bytes"] == sum(f["size"] for f in info["files"].values())
    assert parsed(toma("migrate", "--json"))["steps"] == []
    exported = parsed(toma("export"))
    assert {c["key"] for c in exported["contacts"]} >= {"mira.keller@example.org"}
    assert set(exported) == {"contacts", "conversations", "invoices"}
    refused = toma("restore", str(archive), "--json")
    assert refused.exit_code == 1
    assert "not empty" in refused.output
