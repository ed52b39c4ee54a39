"""What goes out is exactly what toma builds in-process, and what `toma preview` shows.

A tick of more than ``PARALLEL_FROM`` messages builds most of them in a worker
process. Every message received by a real SMTP server is compared, byte for
byte, with the same message built in this process (only the Message-ID and the
Date told apart), and its headers and both parts are read for the way out.
"""

from __future__ import annotations

import email
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from toma.config import Smtp, load_config
from toma.core.contacts import Contact
from toma.daemon.builder import PARALLEL_FROM
from toma.daemon.worker import Worker
from toma.mail.compose import Composer
from toma.mail.unsubscribe import unsubscriber
from toma.store import CONTACTS, open_store
from toma.store.records import newsletters as broadcast

from .conftest import RecordingHandler, free_port
from .projects import POSTAL_ADDRESS, add_contacts, make_project, recipient

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
COUNT = PARALLEL_FROM + 150
POSTAL = POSTAL_ADDRESS

ISSUE = """---
subject: "News for you, {{ contact.first_name }}"
purpose: "Three lessons from this year, for the people I worked with."
audience: "reader"
---
Hi {{ contact.first_name }},

three things I learned this year.
"""


def project(
    folder: Path,
    *,
    smtp: Smtp | None = None,
    sequence: str = "",
    contacts: int = 0,
    tag: str = "friend",
) -> Path:
    config = make_project(folder, smtp=smtp, contacts=contacts, tag=tag, now=NOW)
    text = config.read_text(encoding="utf-8")
    # A one-click URL as well as the mailto: both headers are then written.
    text += f'\n[unsubscribe]\nbase_url = "http://127.0.0.1:{free_port()}"\n'
    config.write_text(text, encoding="utf-8")
    if sequence:
        keep = folder / "sequences" / "keep.toml"
        keep.write_text(sequence + "\n" + keep.read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "newsletters").mkdir(exist_ok=True)
    (folder / "newsletters" / "2026-03.md").write_text(ISSUE, encoding="utf-8")
    return config


def tick(config: Path) -> None:
    store = open_store(config.parent / "var" / "data")
    try:
        worker = Worker(config, store, sync_inbox=False)
        report = worker.run_once(NOW)
        assert not report.problems, report.problems
    finally:
        store.close()


def contacts_of(config: Path) -> dict[str, Contact]:
    store = open_store(config.parent / "var" / "data")
    try:
        return {key: Contact.from_doc(doc) for key, doc in store.all(CONTACTS)}
    finally:
        store.close()


def normalised(data: bytes) -> bytes:
    """``data`` with LF line ends and its Message-ID and Date blanked: all else must match."""
    data = data.replace(b"\r\n", b"\n")
    head, _, body = data.partition(b"\n\n")
    head = re.sub(
        rb"^Message-ID:.*(\n[ \t].*)*$", b"Message-ID: <>", head, count=1, flags=re.MULTILINE
    )
    head = re.sub(rb"^Date:.*(\n[ \t].*)*$", b"Date: -", head, count=1, flags=re.MULTILINE)
    return head + b"\n\n" + body


def parts(data: bytes) -> tuple[EmailMessage, str, str]:
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    return message, plain.get_content(), html.get_content()


def received(handler: RecordingHandler) -> dict[str, bytes]:
    counts = Counter(rcpt for message in handler.messages for rcpt in message.rcpt_tos)
    assert set(counts.values()) == {1}, "somebody got two copies"
    return {message.rcpt_tos[0]: message.data for message in handler.messages}


def assert_way_out(data: bytes, url: str | None, mailto: str) -> None:
    """List-Unsubscribe (mailto and one-click), and the footer in the text and the HTML."""
    message, text, html = parts(data)
    assert str(message["List-Unsubscribe"]).strip() == f"<{mailto}>, <{url}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert POSTAL in text and f"Unsubscribe: {url}" in text
    assert text.index(
        "three things" if "News" in str(message["Subject"]) else "keeping"
    ) < text.index(POSTAL)
    assert POSTAL in html and f'href="{url}"' in html
    assert html.index(POSTAL) < html.index("</body>")


@pytest.mark.smtpd_options(data_delay=0.0)
def test_every_copy_of_a_big_newsletter_is_the_in_process_message(
    tmp_path: Path, smtp_config: Smtp, smtpd_handler: RecordingHandler
) -> None:
    """PARALLEL_FROM + 150 recipients: those the worker built carry their way out too."""
    config = project(tmp_path, smtp=smtp_config, tag="friend")
    add_contacts(tmp_path, COUNT, tag="reader", now=NOW)
    loaded = load_config(config)
    issue = broadcast.load(loaded, "2026-03.md")
    store = open_store(loaded.paths.data)
    try:
        broadcast.schedule(store, issue, now=NOW)
    finally:
        store.close()
    tick(config)

    got = received(smtpd_handler)
    assert set(got) == {recipient(n) for n in range(COUNT)}
    composer = Composer(loaded, unsubscribe=unsubscriber(loaded))
    links = unsubscriber(loaded)
    for address, contact in contacts_of(config).items():
        expected = composer.compose(
            issue.name,
            contact,
            now=NOW,
            extra={"newsletter": issue.view()},
            unsubscribe="footer",
            templates=composer.newsletters,
        )
        assert normalised(got[address]) == normalised(expected.data), address
        assert_way_out(got[address], links.url(address), links.mailto(address))


@pytest.mark.smtpd_options(data_delay=0.0)
def test_every_message_of_a_big_sequence_tick_is_the_in_process_message(
    tmp_path: Path, smtp_config: Smtp, smtpd_handler: RecordingHandler
) -> None:
    """A sequence that opts in to the footer: the worker's messages are the same bytes."""
    config = project(tmp_path, smtp=smtp_config, contacts=COUNT, sequence='unsubscribe = "footer"')
    tick(config)

    got = received(smtpd_handler)
    assert set(got) == {recipient(n) for n in range(COUNT)}
    loaded = load_config(config)
    composer = Composer(loaded, unsubscribe=unsubscriber(loaded))
    links = unsubscriber(loaded)
    for address, contact in contacts_of(config).items():
        expected = composer.compose("hello.md", contact, now=NOW, unsubscribe="footer")
        assert normalised(got[address]) == normalised(expected.data), address
        assert_way_out(got[address], links.url(address), links.mailto(address))


def test_a_sequence_note_is_personal_by_default(tmp_path: Path) -> None:
    """No List-Unsubscribe, no List-Unsubscribe-Post, no footer in either part."""
    config = project(tmp_path, contacts=3)
    tick(config)
    sent = sorted((tmp_path / "var" / "outbox" / "new").iterdir())
    assert len(sent) == 3
    for path in sent:
        message, text, html = parts(path.read_bytes())
        assert "List-Unsubscribe" not in message
        assert "List-Unsubscribe-Post" not in message
        assert "Unsubscribe" not in text and "unsubscribe" not in html.lower()
        assert POSTAL not in text and POSTAL not in html
        assert text.rstrip().endswith("Alex")


def toma(config: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "toma", "--config", str(config), *args],
        capture_output=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("sequence", ["", 'unsubscribe = "headers"', 'unsubscribe = "footer"'])
def test_preview_is_the_message_the_maildir_transport_writes(tmp_path: Path, sequence: str) -> None:
    """Byte for byte but for the Message-ID and the Date, with the sequence's way out."""
    config = project(tmp_path, contacts=2, sequence=sequence)
    shown = toma(config, "preview", "hello.md", "--contact", recipient(1), "--now", NOW.isoformat())
    assert shown.returncode == 0, shown.stderr
    tick(config)
    written = [p.read_bytes() for p in (tmp_path / "var" / "outbox" / "new").iterdir()]
    [sent] = [
        data
        for data in written
        if f"To: {recipient(1)}".encode() in data
        or f"<{recipient(1)}>".encode() in data.split(b"\n\n")[0]
    ]
    assert normalised(shown.stdout) == normalised(sent)
    message, text, _html = parts(sent)
    assert ("List-Unsubscribe" in message) == bool(sequence)
    assert (POSTAL in text) == ("footer" in sequence)


def test_preview_of_a_newsletter_is_the_message_sent(tmp_path: Path) -> None:
    """A newsletter issue previewed carries its list headers and footer, as sent."""
    config = project(tmp_path)
    add_contacts(tmp_path, 2, tag="reader", now=NOW)
    shown = toma(
        config,
        "preview",
        str(tmp_path / "newsletters" / "2026-03.md"),
        "--contact",
        recipient(0),
        "--now",
        NOW.isoformat(),
    )
    assert shown.returncode == 0, shown.stderr
    loaded = load_config(config)
    store = open_store(loaded.paths.data)
    try:
        broadcast.schedule(store, broadcast.load(loaded, "2026-03.md"), now=NOW)
    finally:
        store.close()
    tick(config)
    written = [p.read_bytes() for p in (tmp_path / "var" / "outbox" / "new").iterdir()]
    [sent] = [data for data in written if b"News for you, P0" in data]
    assert normalised(shown.stdout) == normalised(sent)
    links = unsubscriber(loaded)
    assert_way_out(sent, links.url(recipient(0)), links.mailto(recipient(0)))


def test_preview_asks_which_sequence_when_they_differ(tmp_path: Path) -> None:
    """Two sequences send the template, one with the footer: --sequence says which."""
    config = project(tmp_path, contacts=1)
    (tmp_path / "sequences" / "news.toml").write_text(
        'name = "news"\nunsubscribe = "footer"\n\n'
        '[[steps]]\nid = "hello"\nafter = "0h"\ntemplate = "hello.md"\n',
        encoding="utf-8",
    )
    asked = toma(config, "preview", "hello.md", "--contact", recipient(0))
    assert asked.returncode != 0
    assert b"keep (unsubscribe = 'none'), news (unsubscribe = 'footer')" in asked.stderr
    assert b"--sequence" in asked.stderr and b"Traceback" not in asked.stderr
    personal = toma(config, "preview", "hello.md", "--contact", recipient(0), "--sequence", "keep")
    listed = toma(config, "preview", "hello.md", "--contact", recipient(0), "--sequence", "news")
    assert personal.returncode == listed.returncode == 0
    assert b"List-Unsubscribe" not in personal.stdout
    message, text, html = parts(listed.stdout)
    assert "List-Unsubscribe" in message and POSTAL in text and POSTAL in html


def test_a_new_project_sends_nothing_that_looks_like_bulk_mail(tmp_path: Path) -> None:
    """Six weeks of `toma init`'s project: notes and invoice reminders, none with list headers."""
    from datetime import timedelta

    from toma.project.init import init_project
    from toma.store import MESSAGES

    start = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # a Monday
    config = init_project(tmp_path / "p", now=start)
    for day in range(42):
        for hour in (0, 5):
            now = start + timedelta(days=day, hours=hour)
            store = open_store(config.parent / "var" / "data")
            try:
                report = Worker(config, store, sync_inbox=False).run_once(now)
                assert not report.problems, report.problems
            finally:
                store.close()
    store = open_store(config.parent / "var" / "data")
    try:
        kinds = Counter(doc["kind"] for _key, doc in store.all(MESSAGES) if doc["state"] == "sent")
    finally:
        store.close()
    assert kinds["invoice"] >= 2 and kinds["sequence"] >= 5, kinds
    sent = list((config.parent / "var" / "outbox" / "new").iterdir())
    assert len(sent) == sum(kinds.values())
    for path in sent:
        message, text, html = parts(path.read_bytes())
        assert "List-Unsubscribe" not in message, message["Subject"]
        assert "nsubscribe" not in text and "nsubscribe" not in html, message["Subject"]


def test_a_worker_without_the_signer_fails_the_batch(tmp_path: Path) -> None:
    """Messages that need links from a composer with no signer: an error, from either process."""
    import asyncio

    from toma.daemon.builder import CHUNK, LOCAL_CHUNKS, build_chunks
    from toma.errors import TemplateError, TomaError
    from toma.mail.compose import Job

    config = project(tmp_path, contacts=1)
    loaded = load_config(config)
    contact = contacts_of(config)[recipient(0)].to_doc()
    local = CHUNK * LOCAL_CHUNKS  # built in this process: personal notes, no links needed
    jobs = [
        Job(
            key=f"k{n}",
            template="hello.md",
            contact=contact,
            now=NOW,
            unsubscribe="none" if n < local else "footer",
        )
        for n in range(max(PARALLEL_FROM, local) + CHUNK)
    ]

    async def build() -> int:
        built = 0
        async for chunk in build_chunks(Composer(loaded), jobs):
            built += len(chunk)
        return built

    with pytest.raises(TomaError) as caught:
        asyncio.run(build())
    assert not isinstance(caught.value, TemplateError)
    assert caught.value.contact == recipient(0)
    assert "unsubscribe" in caught.value.message


@pytest.mark.parametrize("count", [PARALLEL_FROM - 1, PARALLEL_FROM + 250])
def test_only_the_jobs_kept_are_built_in_either_process(tmp_path: Path, count: int) -> None:
    """What `keep` leaves out of a chunk (another daemon sent it) is never built; a chunk
    left empty is not yielded; the rest comes out in order, in-process or from the worker."""
    import asyncio

    from toma.daemon.builder import CHUNK, build_chunks
    from toma.mail.compose import Job
    from toma.mail.mime import Built

    config = project(tmp_path, contacts=1)
    contact = contacts_of(config)[recipient(0)].to_doc()
    jobs = [
        Job(key=f"k{n:04d}", template="hello.md", contact=contact, now=NOW, unsubscribe="none")
        for n in range(count)
    ]
    gone_chunk = {job.key for job in jobs[CHUNK : 2 * CHUNK]}  # sent elsewhere, all of it
    asked: list[list[str]] = []

    async def keep(chunk: list[Job]) -> list[Job]:
        asked.append([job.key for job in chunk])
        return [j for j in chunk if j.key not in gone_chunk and int(j.key[1:]) % 3 != 0]

    async def build() -> list[list[str]]:
        out = []
        async for chunk in build_chunks(Composer(load_config(config)), jobs, keep):
            assert chunk, "an empty chunk was yielded"
            assert all(isinstance(built, Built) for _job, built in chunk)
            out.append([job.key for job, _built in chunk])
        return out

    chunks = asyncio.run(build())
    assert asked == [[j.key for j in jobs[at : at + CHUNK]] for at in range(0, count, CHUNK)]
    expected = [j.key for j in jobs if j.key not in gone_chunk and int(j.key[1:]) % 3 != 0]
    assert [key for chunk in chunks for key in chunk] == expected
    assert len(chunks) == len(asked) - 1
