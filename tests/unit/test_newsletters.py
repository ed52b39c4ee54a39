"""Newsletter issues: a required purpose, an audience, a schedule, and at most once per person."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from toma.config import Window
from toma.core.audience import EVERYONE, parse_audience
from toma.core.contactfiles import parse_csv
from toma.core.contacts import Contact, Status
from toma.core.newsletters import (
    Newsletter,
    newsletter_key,
    pending,
    recipients,
    send_time,
    split_key,
)
from toma.core.outbox import MessageState, OutboxRecord, new_record
from toma.errors import TemplateError
from toma.mail.unsubscribe import Unsubscribe
from toma.project.newsletters import load_newsletter, load_newsletters, render_newsletter

LAYOUT = """<html><body>{{ body }}
{% if unsubscribe_url %}<a href="{{ unsubscribe_url }}">Unsubscribe</a>{% endif %}
<p>{{ postal_address }}</p></body></html>
"""
ISSUE = """\
---
subject: "News for {{ contact.first_name }}"
purpose: Tell clients about the new office hours, so they know when to call.
audience: client and not no-news
send_at: 2026-12-08
---
Hi {{ contact.first_name }}, this issue is about: {{ newsletter.purpose }}
"""
WINDOW = Window("default", frozenset(range(5)), time(9, 1), time(16, 59))
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def project(tmp_path: Path, issues: dict[str, str]) -> tuple[Path, Path]:
    layouts = tmp_path / "templates" / "layouts"
    layouts.mkdir(parents=True)
    (layouts / "default.html").write_text(LAYOUT, encoding="utf-8")
    folder = tmp_path / "newsletters"
    for name, text in issues.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder, layouts


def load(tmp_path: Path, text: str, name: str = "issue.md") -> Newsletter:
    folder, layouts = project(tmp_path, {name: text})
    return load_newsletter(folder / name, templates_layouts=layouts, folder=folder)


def refused(tmp_path: Path, text: str) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        load(tmp_path, text)
    return caught.value


def person(email: str, *tags: str, status: Status = Status.ACTIVE) -> Contact:
    return Contact(email=email, first_name=email.split("@")[0].title(), tags=tags, status=status)


class TestLoading:
    def test_loads_every_key(self, tmp_path: Path) -> None:
        issue = load(tmp_path, ISSUE)
        assert issue.name == "issue.md"
        assert issue.subject == "News for {{ contact.first_name }}"
        assert issue.purpose.startswith("Tell clients about the new office hours")
        assert issue.audience == parse_audience("client and not no-news")
        assert issue.send_at == date(2026, 12, 8)
        assert issue.layout == "default"
        assert issue.file == tmp_path / "newsletters" / "issue.md"

    def test_name_is_relative_to_the_newsletters_folder(self, tmp_path: Path) -> None:
        folder, layouts = project(tmp_path, {"2026/12-review.md": ISSUE})
        issue = load_newsletter(
            folder / "2026" / "12-review.md", templates_layouts=layouts, folder=folder
        )
        assert issue.name == "2026/12-review.md"

    def test_without_audience_it_is_for_everyone(self, tmp_path: Path) -> None:
        issue = load(tmp_path, "---\nsubject: Hi\npurpose: Say hello.\n---\nHello\n")
        assert issue.audience == EVERYONE
        assert issue.send_at is None

    def test_missing_purpose_is_refused_with_file_and_line(self, tmp_path: Path) -> None:
        """An issue nobody can say the point of does not go out."""
        error = refused(tmp_path, "---\nsubject: Hi\naudience: client\n---\nHello\n")
        assert error.message == (
            "purpose is required: say why this issue is sent and what the reader gets"
        )
        assert error.file == str(tmp_path / "newsletters" / "issue.md")
        assert error.line == 1
        assert error.key == "purpose"
        assert str(error).startswith(f"{tmp_path / 'newsletters' / 'issue.md'}:1: purpose: ")

    @pytest.mark.parametrize("value", ['""', "'   '", "", "[]", "42"])
    def test_empty_or_odd_purpose_is_refused_at_its_line(self, tmp_path: Path, value: str) -> None:
        error = refused(tmp_path, f"---\nsubject: Hi\n\npurpose: {value}\n---\nHello\n")
        assert error.line == 4
        assert error.key == "purpose"
        assert "purpose" in error.message

    def test_misspelt_key_is_refused_rather_than_ignored(self, tmp_path: Path) -> None:
        """A misspelt audience would otherwise send to everyone."""
        error = refused(tmp_path, "---\nsubject: Hi\npurpose: p\naudiance: client\n---\nHi\n")
        assert error.line == 4
        assert error.key == "audiance"
        assert "did you mean audience?" in error.message

    def test_bad_audience_names_line_and_column(self, tmp_path: Path) -> None:
        error = refused(tmp_path, "---\nsubject: Hi\npurpose: p\naudience: vip and not\n---\nHi\n")
        assert error.line == 4
        assert error.key == "audience"
        assert error.message == "expected a tag after 'not' at column 12"
        assert str(error).endswith("issue.md:4: audience: expected a tag after 'not' at column 12")

    @pytest.mark.parametrize("value", ["[client, vip]", "true", "{a: 1}"])
    def test_audience_must_be_text(self, tmp_path: Path, value: str) -> None:
        error = refused(tmp_path, f"---\nsubject: Hi\npurpose: p\naudience: {value}\n---\nHi\n")
        assert (error.line, error.key) == (4, "audience")

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("2026-12-08", date(2026, 12, 8)),
            ('"2026-12-08"', date(2026, 12, 8)),
            (
                "2026-12-08T10:00:00+01:00",
                datetime(2026, 12, 8, 10, tzinfo=timezone(timedelta(hours=1))),
            ),
            (
                '"2026-12-08T10:00+01:00"',
                datetime(2026, 12, 8, 10, tzinfo=timezone(timedelta(hours=1))),
            ),
            ("2026-12-08T09:00:00Z", datetime(2026, 12, 8, 9, tzinfo=UTC)),
        ],
    )
    def test_send_at(self, tmp_path: Path, value: str, expected: date) -> None:
        issue = load(tmp_path, f"---\nsubject: Hi\npurpose: p\nsend_at: {value}\n---\nHi\n")
        assert issue.send_at == expected
        assert type(issue.send_at) is type(expected)

    @pytest.mark.parametrize(
        ("value", "says"),
        [
            ("2026-12-08 10:00", "no UTC offset"),
            ('"2026-12-08T10:00"', "no UTC offset"),
            ("next tuesday", "not an ISO 8601 moment"),
            ('"2026-13-45"', "not a date"),
            ("42", "send_at must be a date"),
        ],
    )
    def test_bad_send_at(self, tmp_path: Path, value: str, says: str) -> None:
        error = refused(tmp_path, f"---\nsubject: Hi\npurpose: p\nsend_at: {value}\n---\nHi\n")
        assert (error.line, error.key) == (4, "send_at")
        assert says in error.message

    def test_template_problems_come_from_the_templates(self, tmp_path: Path) -> None:
        """Subject, layout and Jinja syntax are checked as for any template."""
        assert refused(tmp_path / "a", "---\npurpose: p\n---\nHi\n").key == "subject"
        error = refused(tmp_path / "b", "---\nsubject: Hi\npurpose: p\nlayout: fancy\n---\nHi\n")
        assert (error.key, error.line) == ("layout", 4)
        error = refused(tmp_path / "c", "---\nsubject: Hi\npurpose: p\n---\nHi {{ x\n")
        assert error.line == 5

    def test_load_newsletters_reports_each_broken_issue(self, tmp_path: Path) -> None:
        folder, layouts = project(
            tmp_path,
            {
                "good.md": ISSUE,
                "no-purpose.md": "---\nsubject: Hi\n---\nHi\n",
                "sub/bad-audience.md": "---\nsubject: Hi\npurpose: p\naudience: (a\n---\nHi\n",
            },
        )
        issues, problems = load_newsletters(folder, templates_layouts=layouts)
        assert [issue.name for issue in issues] == ["good.md"]
        assert sorted((Path(p.file or "").name, p.key) for p in problems) == [
            ("bad-audience.md", "audience"),
            ("no-purpose.md", "purpose"),
        ]


class TestRecipients:
    CONTACTS = (
        person("ann@example.org", "client"),
        person("ben@example.org", "client", "no-news"),
        person("cem@example.org", "past-client"),
        person("dan@example.org", "client", status=Status.PAUSED),
        person("eva@example.org", "client", status=Status.UNSUBSCRIBED),
        person("fay@example.org", "client", status=Status.BOUNCED),
        person("gus@example.org", "client"),
        person("ann@example.org", "client"),  # the same person twice gets one copy
    )

    def test_active_contacts_in_the_audience(self, tmp_path: Path) -> None:
        issue = load(tmp_path, ISSUE)
        assert [c.email for c in recipients(issue, self.CONTACTS)] == [
            "ann@example.org",
            "gus@example.org",
        ]

    def test_everyone_means_every_active_contact(self, tmp_path: Path) -> None:
        issue = load(tmp_path, "---\nsubject: Hi\npurpose: p\n---\nHi\n")
        assert [c.email for c in recipients(issue, self.CONTACTS)] == [
            "ann@example.org",
            "ben@example.org",
            "cem@example.org",
            "gus@example.org",
        ]

    def test_key(self) -> None:
        assert (
            newsletter_key("2026-12.md", "ann@example.org")
            == "newsletter:2026-12.md:ann@example.org"
        )
        assert (
            newsletter_key("a.md", person("ann@example.org")) == "newsletter:a.md:ann@example.org"
        )
        assert split_key(newsletter_key("odd:name.md", "ann@example.org")) == (
            "odd:name.md",
            "ann@example.org",
        )
        assert split_key("invoice:INV-7:-3d") is None
        assert split_key("newsletter:") is None

    def test_pending_leaves_out_every_attempted_key(self, tmp_path: Path) -> None:
        """Only a key with no record, or a record still planned, is sent (at most once)."""
        issue = load(tmp_path, "---\nsubject: Hi\npurpose: p\n---\nHi\n")
        people = [person(f"p{n}@example.org") for n in range(8)]
        states = [
            None,
            MessageState.PLANNED,
            MessageState.SENDING,
            MessageState.SENT,
            MessageState.UNKNOWN,
            MessageState.FAILED,
            MessageState.SKIPPED,
            None,
        ]
        history = {
            newsletter_key(issue.name, contact): _record(issue, contact, state)
            for contact, state in zip(people, states, strict=True)
            if state is not None
        }
        # Another issue's records do not count for this one.
        history[newsletter_key("other.md", people[7])] = _record(
            issue, people[7], MessageState.SENT, name="other.md"
        )
        assert [c.email for c in pending(issue, people, history)] == [
            "p0@example.org",
            "p1@example.org",
            "p7@example.org",
        ]

    def test_a_killed_send_resumes_with_exactly_the_rest(self, tmp_path: Path) -> None:
        issue = load(tmp_path, "---\nsubject: Hi\npurpose: p\n---\nHi\n")
        people = [person(f"p{n}@example.org") for n in range(10)]
        history: dict[str, OutboxRecord] = {}
        for contact in pending(issue, people, history)[:4]:  # sent before the kill
            history[newsletter_key(issue.name, contact)] = _record(
                issue, contact, MessageState.SENT
            )
        # The fifth was being handed over when the process died.
        history[newsletter_key(issue.name, people[4])] = _record(
            issue, people[4], MessageState.SENDING
        )
        rest = pending(issue, people, history)
        assert [c.email for c in rest] == [f"p{n}@example.org" for n in range(5, 10)]
        for contact in rest:
            history[newsletter_key(issue.name, contact)] = _record(
                issue, contact, MessageState.SENT
            )
        assert pending(issue, people, history) == []

    def test_an_audience_edited_after_sending_sends_nobody_twice(self, tmp_path: Path) -> None:
        narrow = load(tmp_path / "a", "---\nsubject: Hi\npurpose: p\naudience: client\n---\nHi\n")
        wide = load(tmp_path / "b", "---\nsubject: Hi\npurpose: p\n---\nHi\n")
        people = [person("ann@example.org", "client"), person("bob@example.org")]
        history = {
            newsletter_key(narrow.name, c): _record(narrow, c, MessageState.SENT)
            for c in recipients(narrow, people)
        }
        assert [c.email for c in pending(wide, people, history)] == ["bob@example.org"]


def _record(
    issue: Newsletter, contact: Contact, state: MessageState, name: str | None = None
) -> OutboxRecord:
    record = new_record(
        key=newsletter_key(name or issue.name, contact),
        contact=contact.email,
        kind="newsletter",
        ref=name or issue.name,
        template=issue.name,
        due_at=NOW,
        at=NOW,
    )
    # The states a real send passes through; how it got there does not matter here.
    return record if state is MessageState.PLANNED else replace(record, state=state)


class TestSchedule:
    @pytest.fixture
    def issue(self, tmp_path: Path) -> Newsletter:
        return load(tmp_path, ISSUE)

    def test_a_date_means_the_window_opening_that_day_in_the_recipients_zone(
        self, issue: Newsletter
    ) -> None:
        assert send_time(issue, now=NOW, window=WINDOW, tz=BERLIN) == datetime(
            2026, 12, 8, 9, 1, tzinfo=BERLIN
        )
        tokyo = ZoneInfo("Asia/Tokyo")
        assert send_time(issue, now=NOW, window=WINDOW, tz=tokyo) == datetime(
            2026, 12, 8, 9, 1, tzinfo=tokyo
        )

    def test_a_weekend_date_goes_on_the_next_working_day(self, tmp_path: Path) -> None:
        issue = load(tmp_path, ISSUE.replace("2026-12-08", "2026-12-12"))  # a Saturday
        assert send_time(issue, now=NOW, window=WINDOW, tz=BERLIN) == datetime(
            2026, 12, 14, 9, 1, tzinfo=BERLIN
        )

    def test_late_is_sent_at_the_next_opening_from_now(self, issue: Newsletter) -> None:
        """Nothing lost: a daemon that was down sends when it is back, within the window."""
        now = datetime(2026, 12, 8, 17, 30, tzinfo=BERLIN)
        assert send_time(issue, now=now, window=WINDOW, tz=BERLIN) == datetime(
            2026, 12, 9, 9, 1, tzinfo=BERLIN
        )
        inside = datetime(2026, 12, 9, 11, 0, tzinfo=BERLIN)
        assert send_time(issue, now=inside, window=WINDOW, tz=BERLIN) == inside

    def test_a_moment_is_the_earliest_and_the_window_still_applies(self, tmp_path: Path) -> None:
        issue = load(tmp_path, ISSUE.replace("2026-12-08", "2026-12-08T06:00:00+00:00"))
        assert send_time(issue, now=NOW, window=WINDOW, tz=BERLIN) == datetime(
            2026, 12, 8, 9, 1, tzinfo=BERLIN
        )
        london = ZoneInfo("Europe/London")
        assert send_time(issue, now=NOW, window=WINDOW, tz=london) == datetime(
            2026, 12, 8, 9, 1, tzinfo=london
        )

    def test_unscheduled_goes_at_the_next_opening(self, tmp_path: Path) -> None:
        issue = load(tmp_path, "---\nsubject: Hi\npurpose: p\n---\nHi\n")
        assert issue.not_before(BERLIN) is None
        assert send_time(issue, now=NOW, window=WINDOW, tz=BERLIN) == NOW


class TestRendering:
    def test_renders_with_purpose_and_unsubscribe_link(self, tmp_path: Path) -> None:
        issue = load(tmp_path, ISSUE)
        unsubscribe = Unsubscribe(b"k" * 32, "https://toma.example.com", "alex@example.com")
        contact = person("ann@example.org", "client")
        context = {
            "contact": contact.template_view(),
            "sender": {"postal_address": "Kiel"},
            **unsubscribe.context(contact),
        }
        rendered = render_newsletter(issue, context, contact=contact.email)
        assert rendered.subject == "News for Ann"
        assert "this issue is about: Tell clients about the new office hours" in rendered.text
        assert f'href="{unsubscribe.url(contact)}"' in rendered.html
        assert "<p>Kiel</p>" in rendered.html

    def test_an_issue_without_a_way_out_is_not_rendered(self, tmp_path: Path) -> None:
        issue = load(tmp_path, ISSUE)
        with pytest.raises(ValueError, match="unsubscribe"):
            render_newsletter(issue, {"contact": {"first_name": "Ann"}, "sender": {}})

    def test_missing_field_names_file_line_and_contact(self, tmp_path: Path) -> None:
        issue = load(tmp_path, ISSUE)
        with pytest.raises(TemplateError) as caught:
            render_newsletter(
                issue,
                {"contact": {}, "sender": {}, "unsubscribe_mailto": "mailto:a@b.c"},
                contact="ann@example.org",
            )
        assert caught.value.contact == "ann@example.org"
        assert caught.value.key == "subject"


class TestScaffoldExample:
    def test_the_example_issue_loads_and_renders_for_every_sample_contact(
        self, tmp_path: Path
    ) -> None:
        """The shipped issue passes every check: a real purpose, an audience, a date."""
        with resources.as_file(resources.files("toma.project") / "starter") as root:
            shutil.copytree(root, tmp_path / "project")
        project_dir = tmp_path / "project"
        folder = project_dir / "newsletters"
        issues, problems = load_newsletters(
            folder, templates_layouts=project_dir / "templates" / "layouts"
        )
        assert problems == []
        issue = next(i for i in issues if i.name == "2026-12-year-in-review.md")
        assert len(issue.purpose.split()) >= 10
        assert isinstance(issue.send_at, date)
        contacts = parse_csv(
            (project_dir / "samples" / "contacts.csv").read_text("utf-8"), file="contacts.csv"
        ).contacts
        chosen = recipients(issue, contacts)
        assert chosen and all({"client", "past-client"} & set(c.tags) for c in chosen)
        unsubscribe = Unsubscribe(b"k" * 32, None, "alex@example.com")
        for contact in contacts:
            context = {
                "contact": contact.template_view(),
                "sender": {"first_name": "Alex", "postal_address": "Berlin"},
                **unsubscribe.context(contact),
            }
            rendered = render_newsletter(issue, context, contact=contact.email)
            assert "{{" not in rendered.text and "{#" not in rendered.text
            assert rendered.text.startswith(f"Hi {contact.first_name},")
