"""Invoice reminders end to end on a simulated clock, delivered to the Maildir."""

from __future__ import annotations

import email
import json
from datetime import date, datetime, timedelta
from email import policy
from pathlib import Path
from zoneinfo import ZoneInfo

from click.testing import CliRunner, Result

from toma.cli import main

BERLIN = ZoneInfo("Europe/Berlin")
STAGES = ("-3d", "0d", "+7d", "+14d", "+30d")


def make(tmp_path: Path) -> Path:
    folder = tmp_path / "p"
    (folder / "templates" / "invoices").mkdir(parents=True)
    (folder / "templates" / "layouts").mkdir()
    (folder / "sequences").mkdir()
    stages = ", ".join(f'{{ at = "{at}", template = "invoices/r.md" }}' for at in STAGES)
    (folder / "config.toml").write_text(
        '[owner]\nname = "Alex Example"\nemail = "alex@example.com"\ntimezone = "Europe/Berlin"\n'
        f'[invoices]\nterms = "30d"\nstages = [{stages}]\nthank_you = "invoices/thanks.md"\n'
        'pause_on_reply = "7d"\n'
    )
    (folder / "templates" / "invoices" / "r.md").write_text(
        "---\nsubject: Invoice {{ invoice.number }} ({{ invoice.amount }})\n---\n"
        "Hi {{ contact.first_name }}, a note about {{ invoice.number }}, due {{ invoice.due }}.\n"
        "{% for line in invoice.delivered %}- {{ line }}\n{% endfor %}"
    )
    (folder / "templates" / "invoices" / "thanks.md").write_text(
        "---\nsubject: Thank you for {{ invoice.number }}\n---\nThank you!\n"
    )
    (folder / "templates" / "layouts" / "default.html").write_text("{{ body }}")
    return folder


def toma(folder: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["--config", str(folder / "config.toml"), *args], catch_exceptions=False
    )


def sent(folder: Path) -> list[email.message.EmailMessage]:
    new = folder / "var" / "outbox" / "new"
    found = [
        email.message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in (new.iterdir() if new.exists() else [])
    ]
    return sorted(found, key=lambda m: m["Date"].datetime)  # type: ignore[no-any-return]


def day_by_day(
    folder: Path,
    start: date,
    end: date,
    *,
    at: str = "09:30",
    on_day: dict[date, tuple[str, ...]] | None = None,
) -> None:
    day = start
    while day <= end:
        for args in (on_day or {}).get(day, ()):
            assert toma(folder, *args.split("|")).exit_code == 0
        hour, minute = (int(x) for x in at.split(":"))
        moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=BERLIN)
        result = toma(folder, "run", "--once", "--now", moment.isoformat())
        assert result.exit_code == 0, result.output
        day += timedelta(days=1)


def setup_invoice(folder: Path) -> None:
    assert (
        toma(
            folder,
            "contacts",
            "add",
            "jo@example.org",
            "--first-name",
            "Jo",
            "--timezone",
            "Europe/Berlin",
        ).exit_code
        == 0
    )
    result = toma(
        folder,
        "invoices",
        "add",
        "2026-007",
        "--contact",
        "jo@example.org",
        "--amount",
        "1234.5",
        "--currency",
        "EUR",
        "--issued",
        "2026-03-02",
        "--delivered",
        "Pricing workshop, two days",
        "--now",
        "2026-03-02T10:00:00+01:00",
    )
    assert result.exit_code == 0, result.output
    assert "due 2026-04-01" in result.output


def test_net_30_invoice_gets_exactly_its_stages_at_local_times(tmp_path: Path) -> None:
    folder = make(tmp_path)
    setup_invoice(folder)
    day_by_day(folder, date(2026, 3, 2), date(2026, 5, 8))
    dates = [m["Date"].datetime.isoformat() for m in sent(folder)]
    assert dates == [
        "2026-03-30T09:30:00+02:00",  # -3d is Sunday the 29th: the Monday window, after DST
        "2026-04-01T09:30:00+02:00",  # on the day
        "2026-04-08T09:30:00+02:00",
        "2026-04-15T09:30:00+02:00",
        "2026-05-01T09:30:00+02:00",
    ]
    first, *later = sent(folder)
    assert str(first["Subject"]) == "Invoice 2026-007 (€1,234.50)"
    assert "Pricing workshop, two days" in first.get_body(("plain",)).get_content()
    for message in later:  # on the invoice's thread
        assert message["In-Reply-To"] == first["Message-ID"]


def test_paid_between_stages_stops_reminders_and_thanks_once(tmp_path: Path) -> None:
    folder = make(tmp_path)
    setup_invoice(folder)
    day_by_day(
        folder,
        date(2026, 3, 28),
        date(2026, 4, 30),
        on_day={date(2026, 4, 3): ("invoices|paid|2026-007|--on|2026-04-02",)},
    )
    subjects = [str(m["Subject"]) for m in sent(folder)]
    assert subjects == [
        "Invoice 2026-007 (€1,234.50)",
        "Invoice 2026-007 (€1,234.50)",
        "Thank you for 2026-007",
    ]
    listed = json.loads(toma(folder, "invoices", "list", "--json").output)
    assert listed["rows"] == []
    assert listed["settled"][0]["status"] == "paid"


def test_void_sends_nothing_more(tmp_path: Path) -> None:
    folder = make(tmp_path)
    setup_invoice(folder)
    day_by_day(
        folder,
        date(2026, 3, 28),
        date(2026, 4, 20),
        on_day={date(2026, 4, 2): ("invoices|void|2026-007",)},
    )
    assert len(sent(folder)) == 2


def test_reply_on_the_thread_pauses_reminders_which_resume_after(tmp_path: Path) -> None:
    folder = make(tmp_path)
    setup_invoice(folder)
    day_by_day(folder, date(2026, 3, 28), date(2026, 4, 2))
    first = sent(folder)[0]
    inbox = folder / "var" / "inbox" / "new"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "1775124000.reply.host").write_bytes(
        b"From: Jo <jo@example.org>\r\nTo: alex@example.com\r\n"
        b"Subject: Re: " + str(first["Subject"]).encode() + b"\r\n"
        b"Message-ID: <reply-1@example.org>\r\nIn-Reply-To: "
        + first["Message-ID"].encode()
        + b"\r\nDate: Fri, 03 Apr 2026 08:00:00 +0200\r\n\r\n"
        b"Hi Alex, our accounts team is on it, payment goes out next week.\r\n\r\n"
        b"On Wed, Alex wrote:\r\n> a note about 2026-007\r\n"
    )
    day_by_day(folder, date(2026, 4, 3), date(2026, 4, 20))
    dates = [
        m["Date"].datetime.date().isoformat()
        for m in sent(folder)
        if str(m["Subject"]).startswith("Invoice")
    ]
    # -3d and 0d went; the reply on 3 April pauses for 7 days: +7d (8 April) waits until
    # the pause ends, then +14d on its day.
    assert dates[:2] == ["2026-03-30", "2026-04-01"]
    assert all(d >= "2026-04-10" for d in dates[2:]), dates
    assert "2026-04-15" in dates
    log = toma(folder, "log", "jo@example.org").output
    assert "accounts team is on it" in log
    assert "paused reminders of 2026-007" in log
    assert "> a note about" not in log


def test_csv_of_1000_invoices_reports_bad_rows_and_plans(tmp_path: Path) -> None:
    folder = make(tmp_path)
    contacts = tmp_path / "c.csv"
    contacts.write_text(
        "email,first_name,timezone\n"
        + "".join(f"c{n}@example.org,C{n},Europe/Berlin\n" for n in range(50))
    )
    assert toma(folder, "contacts", "import", str(contacts)).exit_code == 0
    rows = ["number,contact,amount,currency,issued,terms,delivered"]
    for n in range(1000):
        amount = "12,50" if n % 100 == 7 else f"{100 + n}.00"
        rows.append(f"INV-{n:04d},c{n % 50}@example.org,{amount},EUR,2026-03-02,30d,Work {n}")
    csv_file = tmp_path / "invoices.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    result = toma(folder, "invoices", "import", str(csv_file))
    assert result.exit_code == 1
    assert "990 added" in result.output
    assert result.output.count("skipped:") == 10
    assert "row 8" in result.output
    planned = json.loads(
        toma(folder, "plan", "--json", "--days", "3", "--now", "2026-03-28T08:00:00+01:00").output
    )
    invoice_rows = [row for row in planned if row["kind"] == "invoice"]
    assert len(invoice_rows) == 990
    assert {row["at"] for row in invoice_rows} == {"2026-03-30T09:01:00+02:00"}


def test_example_project_shows_invoice_reminders_in_plan(tmp_path: Path) -> None:
    folder = tmp_path / "example"
    assert CliRunner().invoke(main, ["init", str(folder)]).exit_code == 0
    planned = json.loads(toma(folder, "plan", "--json", "--days", "60").output)
    assert any(row["kind"] == "invoice" for row in planned)
    listed = toma(folder, "invoices", "list")
    assert "Open EUR" in listed.output


def test_reminder_attaches_the_invoice_pdf(tmp_path: Path) -> None:
    folder = make(tmp_path)
    (folder / "invoice-2026-008.pdf").write_bytes(b"%PDF-1.4 a small test invoice\n%%EOF\n")
    assert toma(folder, "contacts", "add", "jo@example.org", "--first-name", "Jo").exit_code == 0
    assert (
        toma(
            folder,
            "invoices",
            "add",
            "2026-008",
            "--contact",
            "jo@example.org",
            "--amount",
            "1000",
            "--currency",
            "JPY",
            "--issued",
            "2026-03-02",
            "--terms",
            "14d",
            "--attachment",
            "invoice-2026-008.pdf",
        ).exit_code
        == 0
    )
    day_by_day(folder, date(2026, 3, 13), date(2026, 3, 13))
    (message,) = sent(folder)
    assert str(message["Subject"]) == "Invoice 2026-008 (¥1,000)"
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "invoice-2026-008.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content().startswith(b"%PDF-1.4")
    assert "Hi Jo" in message.get_body(("plain",)).get_content()


def test_invoices_saved_by_excel_in_a_german_locale_import_exactly_their_rows(
    tmp_path: Path,
) -> None:
    """Excel's plain "CSV" in Germany: Windows-1252, ";" named by a "sep=" line, CRLF rows.

    The delivered cell of INV-1 holds a quoted line break followed by text shaped like a
    row for mallory: read as another dialect that text became an invoice nobody issued.
    A cell over 128 KB is refused as its own row's problem; the other rows go in.
    """
    folder = make(tmp_path)
    contacts = tmp_path / "c.csv"
    contacts.write_text(
        "email,first_name\nann@example.org,Ann\nmallory@example.org,Mal\nbo@example.org,Bo\n"
    )
    assert toma(folder, "contacts", "import", str(contacts)).exit_code == 0
    raw = (
        b"sep=;\r\n"
        b"Invoice;E-Mail;amount;currency;issued;delivered\r\n"
        b'INV-1;ann@example.org;120.00;EUR;2026-03-02;"Beratung f\xfcr \xc4rzte\n'
        b'INV-9;mallory@example.org;9999.00;EUR;2026-03-02;x"\r\n'
        b"INV-2;bo@example.org;80.00;EUR;2026-03-02;" + b"x" * (129 * 1024) + b"\r\n"
        b"INV-3;bo@example.org;40.00;EUR;2026-03-02;M\xfcnchen\r\n"
    )
    csv_file = tmp_path / "rechnungen.csv"
    csv_file.write_bytes(raw)
    result = toma(folder, "invoices", "import", str(csv_file))
    assert result.exit_code == 1, result.output
    assert "2 added" in result.output
    assert "row 2: a cell is longer than 128 KB" in result.output
    listed = toma(folder, "invoices", "list")
    assert "INV-1" in listed.output
    assert "INV-3" in listed.output
    assert "INV-9" not in listed.output
    assert "INV-2" not in listed.output
