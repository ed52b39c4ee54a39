"""`toma init`, `toma check` and `toma preview` on a project made by `toma init`."""

from __future__ import annotations

import email
import json
from email import policy
from pathlib import Path

from click.testing import CliRunner

from toma.cli import main

from .conftest import Invoke


def test_init_project_passes_check(toma: Invoke) -> None:
    result = toma("check")
    assert result.exit_code == 0, result.output
    assert "All good" in result.output


def test_init_refuses_to_overwrite(project: Path) -> None:
    before = (project / "config.toml").read_text()
    result = CliRunner().invoke(main, ["init", str(project)])
    assert result.exit_code == 1
    assert "already holds a project" in result.output
    assert (project / "config.toml").read_text() == before


def test_init_imports_sample_contacts(toma: Invoke) -> None:
    contacts = json.loads(toma("contacts", "list", "--json").output)
    assert len(contacts) == 5
    assert {"email", "status", "tags"} <= set(contacts[0])


def test_check_reports_a_typo_in_the_config(project: Path, toma: Invoke) -> None:
    config = project / "config.toml"
    config.write_text(config.read_text().replace("min_gap =", "min_gapp ="))
    result = toma("check")
    assert result.exit_code == 1
    assert "config.toml:" in result.output
    assert (
        "pace.min_gapp: unknown key 'min_gapp' in [pace] (did you mean 'min_gap'?)" in result.output
    )


def test_check_reports_a_template_using_an_unknown_field(project: Path, toma: Invoke) -> None:
    """Every contact renders it; the error names the template, the line and the contacts."""
    (project / "templates" / "extra.md").write_text(
        "---\nsubject: Hello\n---\nHi {{ contact.first_name }},\n\n"
        "how is {{ contact.favourite_colour }}?\n"
    )
    result = toma("check")
    assert result.exit_code == 1
    assert "extra.md:6:" in result.output
    assert "favourite_colour" in result.output
    assert "for 5 contacts" in result.output


def test_check_lists_every_problem_at_once(project: Path, toma: Invoke) -> None:
    (project / "templates" / "one.md").write_text("---\nsubject: A\n---\n{{ contact.nope }}\n")
    (project / "templates" / "two.md").write_text("---\nsubject: B\n---\n{% if %}\n")
    result = toma("check")
    assert result.exit_code == 1
    assert "one.md" in result.output
    assert "two.md" in result.output
    assert "2 problem(s)" in result.output


def test_preview_prints_the_exact_message(toma: Invoke) -> None:
    result = toma(
        "preview",
        "acquaintance/nice-to-meet.md",
        "--contact",
        "Mira.Keller@example.org",
        "--now",
        "2026-11-30T10:00:00+01:00",
    )
    assert result.exit_code == 0, result.output
    message = email.message_from_string(result.output, policy=policy.default)
    assert message["To"].addresses[0].addr_spec == "mira.keller@example.org"
    assert message["Subject"] == "Good to meet you at the Hamburg Product Summit"
    assert message["Message-ID"].endswith("@example.com>")
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    assert "your talk on pricing workshops" in text
    html = message.get_body(("html",)).get_content()
    assert "<p>" in html


def test_preview_unknown_contact_is_one_line(toma: Invoke) -> None:
    result = toma("preview", "acquaintance/nice-to-meet.md", "--contact", "who@example.org")
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "no such contact" in result.output
