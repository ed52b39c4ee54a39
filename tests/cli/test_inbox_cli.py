"""The inbox from the command line: explain, sync on the Maildir, log, the daily digest."""

from __future__ import annotations

import email
import json
from email import policy
from pathlib import Path

from click.testing import CliRunner, Result

from toma.cli import main

from .test_sequences_cli import make, sequence

BOUNCE = (
    b"From: MAILER-DAEMON@mx.example.net\r\nTo: alex@example.com\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <b1@mx.example.net>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="x"\r\n\r\n'
    b"--x\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
    b"--x\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n"
    b"\r\nFinal-Recipient: rfc822; Ann@Example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    b"--x--\r\n"
)


def reply(number: int, sender: str, text: str, *, in_reply_to: str = "") -> bytes:
    threading = f"In-Reply-To: {in_reply_to}\r\n" if in_reply_to else ""
    return (
        f"From: {sender}\r\nTo: alex@example.com\r\nSubject: Re: Hello\r\n"
        f"Message-ID: <r{number}@example.org>\r\nDate: Mon, 02 Mar 2026 12:0{number}:00 +0100"
        f"\r\n{threading}\r\n{text}\r\n\r\nOn Mon, 2 Mar 2026, Alex wrote:\r\n"
        "> Hi Ann!\r\n"
    ).encode()


def toma(folder: Path | None, *args: str) -> Result:
    config = ["--config", str(folder / "config.toml")] if folder else ["--config", "/nonexistent"]
    return CliRunner().invoke(main, [*config, *args], catch_exceptions=False)


def test_explain_prints_the_documented_json_without_a_project(tmp_path: Path) -> None:
    (tmp_path / "bounce.eml").write_bytes(BOUNCE)
    (tmp_path / "reply.eml").write_bytes(reply(1, "ann@example.org", "Lovely, thanks!"))
    result = toma(
        None,
        "inbox",
        "explain",
        "--json",
        str(tmp_path / "bounce.eml"),
        str(tmp_path / "reply.eml"),
    )
    assert result.exit_code == 0, result.output
    bounce, answer = json.loads(result.output)
    assert (bounce["class"], bounce["hard"], bounce["recipients"], bounce["contact"]) == (
        "bounce",
        True,
        ["ann@example.org"],
        None,
    )
    assert (answer["class"], answer["text"]) == ("reply", "Lovely, thanks!")
    assert set(bounce) >= {"file", "class", "hard", "recipients", "contact"}


def test_sync_log_and_daily_digest(tmp_path: Path) -> None:
    folder = make(tmp_path, sequence("hello", "met", ("first", "0h"), ("second", "1w")))
    config = folder / "config.toml"
    config.write_text(config.read_text() + '[inbox]\nnotify = "daily"\ndigest_at = "08:00"\n')
    assert (
        toma(
            folder, "contacts", "add", "ann@example.org", "--first-name", "Ann", "--tag", "met"
        ).exit_code
        == 0
    )
    assert toma(folder, "run", "--once", "--now", "2026-03-02T10:00:00+01:00").exit_code == 0
    outbox = folder / "var" / "outbox" / "new"
    first = email.message_from_bytes(next(outbox.iterdir()).read_bytes(), policy=policy.default)

    inbox = folder / "var" / "inbox" / "new"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "1.r1.host").write_bytes(
        reply(1, "Ann <ann@example.org>", "Lovely, thanks Alex!", in_reply_to=first["Message-ID"])
    )
    (inbox / "2.r2.host").write_bytes(reply(2, "stranger@example.net", "Who are you?"))
    synced = toma(folder, "inbox", "sync", "--now", "2026-03-02T13:00:00+01:00")
    assert "2 recorded" in synced.output
    assert "1 kept aside" in synced.output
    assert "2 already known" not in toma(folder, "inbox", "sync").output

    log = toma(folder, "log", "ann@example.org").output
    assert "→ sequence: Hello Ann" in log
    assert "← reply: Re: Hello" in log
    assert "| Lovely, thanks Alex!" in log
    assert "toma: stopped hello" in log
    assert "Hi Ann!" not in log  # the quoted history is not repeated

    # No notice yet: the digest goes once a day, from 08:00 the owner's time.
    toma(folder, "run", "--once", "--now", "2026-03-03T07:00:00+01:00")
    assert len(list(outbox.iterdir())) == 1
    toma(folder, "run", "--once", "--now", "2026-03-03T08:30:00+01:00")
    toma(folder, "run", "--once", "--now", "2026-03-03T09:30:00+01:00")
    notices = [
        email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in outbox.iterdir()
    ]
    digests = [m for m in notices if m["To"].addresses[0].addr_spec == "alex@example.com"]
    assert len(digests) == 1
    assert digests[0]["Auto-Submitted"] == "auto-generated"
    assert "Lovely, thanks Alex!" in digests[0].get_body(("plain",)).get_content()


def test_explain_reads_the_real_world_corpus(tmp_path: Path) -> None:
    """`toma inbox explain --json` over every corpus message: class and failed recipients.

    The corpus (tests/corpus, sources in SOURCES.md) holds real bounces from many
    MTAs, out-of-office replies and human replies; the bar is 95% on each measure.
    """
    corpus = Path(__file__).parents[1] / "corpus"
    expected = json.loads((corpus / "expected.json").read_text(encoding="utf-8"))
    files = [str(corpus / name) for name in sorted(expected)]
    result = toma(None, "inbox", "explain", "--json", *files)
    assert result.exit_code == 0
    rows = {
        Path(row["file"]).relative_to(corpus).as_posix(): row for row in json.loads(result.output)
    }
    right = [name for name, want in expected.items() if rows[name]["class"] == want["class"]]
    bounces = {name: want for name, want in expected.items() if want["class"] == "bounce"}
    recipients = [
        name
        for name, want in bounces.items()
        if sorted(rows[name].get("recipients") or []) == sorted(want["recipients"])
    ]
    assert len(right) / len(expected) >= 0.95, sorted(set(expected) - set(right))
    assert len(recipients) / len(bounces) >= 0.95, sorted(set(bounces) - set(recipients))
