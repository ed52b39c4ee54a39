"""The dashboard in a real browser (Debian's Chromium, headless), as a person uses it."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest
from playwright.sync_api import Page

from tests.integration.projects import make_project
from toma.config import load_config
from toma.errors import TomaError
from toma.mail.unsubscribe import unsubscriber
from toma.store import CONTACTS, open_store
from toma.timeutil import FixedClock
from toma.web.app import check_exposure
from toma.web.auth import hash_password

from .conftest import KEN, LENA, MIA, NOW, SECOND_AFTER, Site, first_sent_at, serve


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def test_today_lists_a_reply_a_tick_received(site: Site, page: Page) -> None:
    page.goto(site.base + "/")
    unanswered = page.locator("#unanswered")
    assert KEN in unanswered.inner_text()
    assert "Re: Hello Ken" in unanswered.inner_text()
    came_in = page.locator("#came-in").inner_text()
    assert KEN in came_in and "reply" in came_in
    assert MIA in page.locator("#went-out").inner_text()
    site.shot(page, "today")


def test_plan_shows_a_send_at_the_recipients_local_time(site: Site, page: Page) -> None:
    """Mia's second message goes a week after her first, at the same hour on her clock
    though the US changed its clocks on 8 March: shown in New York's time (EDT), under
    the owner's day in Berlin."""
    first = first_sent_at(site.config_path, MIA).astimezone(ZoneInfo("America/New_York"))
    due = first + SECOND_AFTER  # wall-clock arithmetic: the same hour a week later
    theirs = due.strftime("%a %Y-%m-%d %H:%M %Z")
    assert theirs.endswith("EDT")
    page.goto(site.base + "/plan")
    row = page.locator(f'tr.send[data-contact="{MIA}"]')
    assert row.count() == 1
    assert row.locator("td.theirs").inner_text() == theirs
    day = due.astimezone(ZoneInfo("Europe/Berlin")).strftime("%a %Y-%m-%d")
    assert page.locator("section.day", has=row).locator("h2").inner_text() == day
    assert KEN not in page.locator("main").inner_text()  # he replied: his sequence stopped
    site.shot(page, "plan")


def test_every_page_renders_what_the_store_holds(site: Site, page: Page) -> None:
    page.goto(site.base + "/contacts")
    assert page.locator("tbody tr").count() == 3
    page.fill("input[name=q]", "mia")
    page.click("button[type=submit]")
    assert page.locator("tbody tr").count() == 1
    page.goto(site.base + "/contacts")
    site.shot(page, "contacts")

    page.click(f"text={KEN}")
    text = page.locator("main").inner_text()
    assert "Good to hear from you! Lunch soon?" in text  # his reply, in the conversation
    assert "Hello Ken" in text  # and what went to him
    site.shot(page, "contact")

    page.goto(site.base + "/invoices")
    text = page.locator("main").inner_text()
    assert "2026-007" in text and "2026-011" in text
    assert page.locator("svg.chart rect").count() >= 5
    site.shot(page, "invoices")

    page.goto(site.base + "/newsletters")
    assert page.locator("h1").inner_text() == "Newsletters"
    site.shot(page, "newsletters")

    page.goto(site.base + "/status")
    assert page.locator("#health").inner_text() == "Health: ok"
    site.shot(page, "status")


def test_a_post_without_the_csrf_token_is_refused(site: Site, page: Page) -> None:
    page.goto(site.base + f"/contacts/{LENA}")
    answer = page.request.post(site.base + f"/contacts/{LENA}/pause", form={"x": "1"})
    assert answer.status == 403
    forged = page.request.post(site.base + f"/contacts/{LENA}/pause", form={"csrf": "0" * 64})
    assert forged.status == 403
    with open_store(site.config.paths.data) as store:
        doc = store.get(CONTACTS, LENA)
    assert doc is not None and doc["status"] == "active"


def test_pausing_a_contact_from_its_page_removes_its_sends_from_the_plan(
    site: Site, page: Page
) -> None:
    page.goto(site.base + "/plan")
    assert page.locator(f'tr.send[data-contact="{LENA}"]').count() == 1
    page.goto(site.base + f"/contacts/{LENA}")
    page.click("#pause")
    assert page.locator("#status").inner_text() == "paused"
    page.goto(site.base + "/plan")
    assert page.locator(f'tr.send[data-contact="{LENA}"]').count() == 0
    assert page.locator(f'tr.send[data-contact="{MIA}"]').count() == 1
    with open_store(site.config.paths.data) as store:
        doc = store.get(CONTACTS, LENA)
    assert doc is not None
    assert (doc["status"], doc["status_reason"]) == ("paused", "toma dashboard pause")


def _events(ics: bytes) -> set[tuple[str, str, str]]:
    calendar = icalendar.Calendar.from_ical(ics)
    found = set()
    for event in calendar.walk("VEVENT"):
        kind, ref, _to, contact = str(event["summary"]).split(" ", 3)
        found.add((contact, f"{kind}:{ref}", event.decoded("dtstart").isoformat()))
    return found


def test_plan_ics_parses_and_matches_toma_plan_json(site: Site, page: Page) -> None:
    now = site.clock.now()
    toma = [sys.executable, "-m", "toma", "--config", str(site.config_path), "plan"]
    args = ["--days", "28", "--now", now.isoformat()]
    listed = json.loads(
        subprocess.run([*toma, *args, "--json"], capture_output=True, check=True).stdout
    )
    assert listed
    expected = {
        (
            row["contact"],
            f"{row['kind']}:{row['ref']}",
            datetime.fromisoformat(row["at"]).astimezone(UTC).isoformat(),
        )
        for row in listed
    }
    page.goto(site.base + "/status")
    link = page.get_attribute("text=this private link", "href")  # as the owner finds it
    assert link is not None and link.startswith("/plan.ics?token=")
    token = link.split("=", 1)[1]
    status, body = fetch(site.base + link)
    assert status == 200
    assert _events(body) == expected
    printed = subprocess.run([*toma, *args, "--ics"], capture_output=True, check=True).stdout
    assert _events(printed) == expected
    assert fetch(f"{site.base}/plan.ics")[0] == 404
    altered = token[:-1] + ("1" if token[-1] == "0" else "0")
    assert fetch(f"{site.base}/plan.ics?token={altered}")[0] == 404


def test_healthz(site: Site, tmp_path: Path) -> None:
    assert fetch(site.base + "/healthz") == (200, b"ok\n")
    late = FixedClock(site.clock.now() + timedelta(hours=3))
    server, built = serve(site.config_path, late)
    try:
        status, body = fetch("http://{}:{}/healthz".format(*server.address))
    finally:
        server.stop()
        built.close()
    assert status == 503 and body.startswith(b"last tick ")
    fresh = make_project(tmp_path / "fresh", now=NOW)
    server, built = serve(fresh, FixedClock(NOW))
    try:
        assert fetch("http://{}:{}/healthz".format(*server.address)) == (503, b"no tick yet\n")
    finally:
        server.stop()
        built.close()


# --- from another machine -------------------------------------------------------------

PAGES = [
    "/",
    "/plan",
    "/contacts",
    "/contacts/person0@example.org",
    "/invoices",
    "/newsletters",
    "/status",
    "/healthz",
    "/plan.ics",
    "/static/style.css",
    "/nowhere",
]


def other_address() -> str:
    """An address of this machine that is not loopback (the one a default route uses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # UDP: chooses a source address, sends nothing
        address = str(probe.getsockname()[0])
    assert not address.startswith("127."), address
    return address


def ask(
    address: str, port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> int:
    """A request whose peer address is ``address`` (not loopback): bound to it, sent to it."""
    connection = http.client.HTTPConnection(address, port, timeout=10, source_address=(address, 0))
    try:
        connection.request(
            method, path, body=b"" if method == "POST" else None, headers=headers or {}
        )
        return connection.getresponse().status
    finally:
        connection.close()


def test_from_another_address_without_the_password_only_unsubscribe_answers(
    tmp_path: Path,
) -> None:
    config_path = make_project(tmp_path, contacts=1, now=NOW)
    (tmp_path / "dashboard.hash").write_text(hash_password("correct horse") + "\n")
    config_path.write_text(
        config_path.read_text() + '\n[dashboard]\npassword_file = "dashboard.hash"\n'
    )
    address = other_address()
    server, built = serve(config_path, FixedClock(NOW), host="0.0.0.0")  # noqa: S104
    port = server.address[1]
    try:
        for path in PAGES:
            assert ask(address, port, path) == 401, path
        assert ask(address, port, "/contacts/person0@example.org/pause", "POST") == 401
        import base64

        wrong = "Basic " + base64.b64encode(b"me:wrong horse").decode()
        assert ask(address, port, "/", headers={"Authorization": wrong}) == 401
        right = "Basic " + base64.b64encode(b"me:correct horse").decode()
        assert ask(address, port, "/", headers={"Authorization": right}) == 200
        assert ask(address, port, "/contacts", headers={"Authorization": right}) == 200
        token = unsubscriber(load_config(config_path)).token("person0@example.org")
        assert ask(address, port, f"/u/{token}") == 200
        assert ask(address, port, f"/u/{token}", "POST") == 200
    finally:
        server.stop()
        built.close()
    with open_store(tmp_path / "var" / "data") as store:
        doc = store.get(CONTACTS, "person0@example.org")
    assert doc is not None and doc["status"] == "unsubscribed"


def test_a_name_rebound_to_127_0_0_1_is_refused(site: Site) -> None:
    """DNS rebinding: another site's name resolving to 127.0.0.1 must not read the pages."""
    port = site.server.address[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
        assert ask("127.0.0.1", port, "/contacts", headers={"Host": host}) == 403, host
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost"):
        assert ask("127.0.0.1", port, "/contacts", headers={"Host": host}) == 200, host
    token = unsubscriber(site.config).token(MIA)
    assert ask("127.0.0.1", port, f"/u/{token}", headers={"Host": "news.example.com"}) == 200


def test_without_a_password_only_this_machine_is_served(tmp_path: Path) -> None:
    config_path = make_project(tmp_path, contacts=1, now=NOW)
    config = load_config(config_path)
    with pytest.raises(TomaError, match="without a password"):
        check_exposure(config, "0.0.0.0")  # noqa: S104
    check_exposure(config, "127.0.0.1")
    address = other_address()
    # Bound beyond loopback all the same (as a misconfigured proxy might reach it).
    server, built = serve(config_path, FixedClock(NOW), host="0.0.0.0")  # noqa: S104
    port = server.address[1]
    try:
        for path in PAGES:
            assert ask(address, port, path) == 403, path
        assert ask("127.0.0.1", port, "/contacts") == 200
        token = unsubscriber(config).token("person0@example.org")
        assert ask(address, port, f"/u/{token}") == 200
    finally:
        server.stop()
        built.close()


def test_unenroll_and_mark_paid_from_the_pages(site: Site, page: Page) -> None:
    """Last in this module: it changes Mia's plan and her invoice."""
    page.goto(site.base + f"/contacts/{MIA}")
    assert "keep/second" in page.locator("#next-steps").inner_text()
    page.click("text=Unenroll")
    assert page.locator("#next-steps").count() == 0  # "Nothing planned."
    assert "stopped" in page.locator("main table").first.inner_text()
    page.goto(site.base + "/plan")
    assert page.locator(f'tr.send[data-contact="{MIA}"]').count() == 0

    page.goto(site.base + "/invoices/2026-007")
    page.click("#paid")
    assert page.locator("#invoice-status").inner_text() == "paid"
    page.goto(site.base + "/invoices")
    assert "2026-007" not in page.locator("main table").inner_text()
    with open_store(site.config.paths.data) as store:
        invoice = store.get("invoices", "2026-007")
    assert invoice is not None and invoice["status"] == "paid"
