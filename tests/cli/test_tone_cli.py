"""`toma check` warns when a template a sequence sends reads like a pitch; it blocks nothing."""

from __future__ import annotations

from pathlib import Path

from .test_sequences_cli import make, sequence, toma

PITCH = (
    "---\nsubject: Hello {{ contact.first_name }}\n---\nHi {{ contact.first_name }},\n\n"
    "how are you?\n\nLetzte Chance: nur noch bis Freitag 20% Rabatt!\n"
)


def project(tmp_path: Path, note: str) -> Path:
    folder = make(tmp_path, sequence("hello", "met", ("first", "0h")))
    (folder / "templates" / "note.md").write_text(note)
    return folder


def test_a_pitch_is_a_warning_with_its_own_exit_code(tmp_path: Path) -> None:
    folder = project(tmp_path, PITCH)
    result = toma(folder, "check")
    assert result.exit_code == 3, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(lines) == 2
    note = folder / "templates" / "note.md"
    assert all(line.startswith(f"warning: {note}:8: reads like a pitch: ") for line in lines)
    assert any('urgency ("Letzte Chance")' in line for line in lines)
    assert all("Suggestion: " in line and "'pitch: ok'" in line for line in lines)
    assert "2 warning(s), nothing wrong" in result.output
    # It blocks nothing: the message is still planned and sent.
    sent = toma(folder, "run", "--once", "--now", "2026-03-02T10:00:00+01:00")
    assert sent.exit_code == 0, sent.output


def test_the_front_matter_key_silences_it(tmp_path: Path) -> None:
    folder = project(tmp_path, PITCH.replace("---\nHi", "pitch: ok\n---\nHi", 1))
    result = toma(folder, "check")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output


def test_a_pitch_in_the_subject_is_found_too(tmp_path: Path) -> None:
    folder = project(tmp_path, "---\nsubject: LAST CHANCE TODAY\n---\nHi there.\n")
    result = toma(folder, "check")
    assert result.exit_code == 3
    assert ":2: reads like a pitch: " in result.output


def test_errors_win_over_warnings(tmp_path: Path) -> None:
    folder = project(tmp_path, PITCH)
    (folder / "sequences" / "broken.toml").write_text('name = "broken"\nsteps = 3\n')
    result = toma(folder, "check")
    assert result.exit_code == 1
    assert "warning: " in result.output and "error: " in result.output


def test_a_template_no_sequence_sends_is_not_read(tmp_path: Path) -> None:
    folder = project(tmp_path, "---\nsubject: Hi\n---\nHi {{ contact.first_name }}.\n")
    (folder / "templates" / "draft.md").write_text(PITCH)
    result = toma(folder, "check")
    assert result.exit_code == 0, result.output


def test_a_newsletter_gets_a_softer_note(tmp_path: Path) -> None:
    folder = project(tmp_path, "---\nsubject: Hi\n---\nHi {{ contact.first_name }}.\n")
    (folder / "newsletters").mkdir()
    (folder / "newsletters" / "spring.md").write_text(
        "---\nsubject: Spring news\npurpose: say what changed this spring\n"
        "send_at: 2026-04-01\n---\nOur new course: last chance to join, see\n"
        "https://example.com/pricing and https://example.com/shop\n"
    )
    result = toma(folder, "check")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert len(notes) == 1  # the urgency; links to an offer are what a newsletter may have
    assert "may read like a pitch: urgency" in notes[0]
