"""Sequence files: good files become values; every mistake is one located error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from toma.core.contacts import Contact, Status
from toma.core.enrolments import Enrolment, tag_enrolments
from toma.core.sequences import OnReply, held_sequences, parse_sequence
from toma.errors import SequenceError
from toma.project.sequences import load_sequences
from toma.timeutil import parse_duration

WINDOWS = {"default", "weekend"}

GOOD = """\
name = "new-acquaintance"
description = "A note within 72 hours of meeting someone, then light touches"
enroll_tag = "met"
on_reply = "pause 30d"
window = "default"

[[steps]]
id = "nice-to-meet"
after = "1d"
template = "acquaintance/nice-to-meet.md"

[[steps]]
id = "useful-article"
after = "2w"
template = "acquaintance/useful-article.md"

[repeat]
every = "90d"
template = "keep-in-touch/hello.md"
"""

FILE = Path("sequences/new-acquaintance.toml")


def test_good_file_parses() -> None:
    sequence = parse_sequence(FILE, GOOD, windows=WINDOWS)
    assert sequence.name == "new-acquaintance"
    assert sequence.enroll_tag == "met"
    assert sequence.on_reply == OnReply("pause", parse_duration("30d"))
    assert sequence.window == "default"
    assert [step.id for step in sequence.steps] == ["nice-to-meet", "useful-article"]
    assert sequence.steps[1].after.approx() == timedelta(weeks=2)
    assert sequence.repeat is not None
    assert sequence.repeat.every.approx() == timedelta(days=90)
    assert sequence.file == FILE
    assert sequence.step("useful-article") is sequence.steps[1]


def test_defaults() -> None:
    """No window means "default"; no on_reply means stop; no enroll_tag means by hand."""
    text = """name = "s"\n[[steps]]\nid = "a"\nafter = "0h"\ntemplate = "a.md"\n"""
    sequence = parse_sequence(FILE, text, windows=WINDOWS)
    assert sequence.window == "default"
    assert sequence.on_reply == OnReply("stop")
    assert sequence.enroll_tag is None
    assert sequence.repeat is None
    assert sequence.description == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stop", OnReply("stop")),
        ("continue", OnReply("continue")),
        ("pause", OnReply("pause", None)),
        ("pause 30d", OnReply("pause", parse_duration("30d"))),
        ("pause 2w", OnReply("pause", parse_duration("2w"))),
    ],
)
def test_on_reply(text: str, expected: OnReply) -> None:
    sequence = parse_sequence(FILE, GOOD.replace('"pause 30d"', f'"{text}"'), windows=WINDOWS)
    assert sequence.on_reply == expected


def test_a_description_may_run_over_several_lines() -> None:
    text = GOOD.replace('"A note within 72 hours', '"""A note\n\twithin 72 hours').replace(
        'light touches"', 'light touches"""'
    )
    sequence = parse_sequence(FILE, text, windows=WINDOWS)
    assert sequence.description.startswith("A note\n\twithin")


def test_repeat_only_sequence() -> None:
    """A keep-in-touch cadence without steps is a sequence too."""
    text = 'name = "hello"\n[repeat]\nevery = "90d"\ntemplate = "hello.md"\n'
    sequence = parse_sequence(FILE, text, windows=WINDOWS)
    assert sequence.steps == ()
    assert sequence.repeat is not None


# (case, replace this, with that, expected key, expected line, message fragment)
BAD = [
    ("unknown top key", 'window = "default"', 'windw = "default"', "windw", 5, "mean 'window'"),
    ("unknown step key", 'after = "2w"', 'afer = "2w"', "steps[1].afer", 14, "mean 'after'"),
    ("unknown repeat key", 'every = "90d"', 'evry = "90d"', "repeat.evry", 18, "mean 'every'"),
    ("bad duration", 'after = "2w"', 'after = "soon"', "steps[1].after", 14, "not a duration"),
    ("negative", 'after = "1d"', 'after = "-1d"', "steps[0].after", 9, "sign"),
    ("duplicate id", 'id = "useful-article"', 'id = "nice-to-meet"', "steps[1].id", 13, "used"),
    ("id not a slug", 'id = "useful-article"', 'id = "Useful Article"', "steps[1].id", 13, "slug"),
    ("reserved id", 'id = "useful-article"', 'id = "repeat-2"', "steps[1].id", 13, "reserved"),
    # A line end after a slug would become part of every key and ref written.
    ("id ends a line", '"useful-article"', '"useful-article\\n"', "steps[1].id", 13, "control"),
    ("id with a NUL", '"useful-article"', '"useful\\u0000"', "steps[1].id", 13, "control"),
    ("reserved, line end", '"useful-article"', '"repeat-2\\n"', "steps[1].id", 13, "control"),
    ("unknown window", 'window = "default"', 'window = "defualt"', "window", 5, "mean 'default'"),
    ("bad on_reply", '"pause 30d"', '"ignore"', "on_reply", 4, "on_reply must be"),
    ("bad pause", '"pause 30d"', '"pause soon"', "on_reply", 4, "not a duration"),
    ("name not slug", '"new-acquaintance"', '"New Acquaintance"', "name", 1, "slug"),
    ("name ends a line", '"new-acquaintance"', '"new-acquaintance\\n"', "name", 1, "control"),
    ("bad window", 'window = "default"', 'window = "default\\u001b"', "window", 5, "control"),
    (
        "template ends",
        '"acquaintance/useful-article.md"',
        '"a.md\\r"',
        "steps[1].template",
        15,
        "control",
    ),
    ("NUL described", '"A note within', '"A\\u0000 note within', "description", 2, "control"),
    ("name not string", '"new-acquaintance"', "7", "name", 1, "must be a string"),
    (
        "missing template",
        'template = "acquaintance/useful-article.md"',
        "",
        "steps[1].template",
        12,
        "required",
    ),
    ("zero repeat", 'every = "90d"', 'every = "0d"', "repeat.every", 18, "longer than nothing"),
    ("bad tag", 'enroll_tag = "met"', 'enroll_tag = "met up"', "enroll_tag", 3, "not a tag"),
    ("huge after", '"2w"', '"99999999999999y"', "steps[1].after", 14, "0 and 10 years"),
    ("huge repeat", '"90d"', '"99999999999999y"', "repeat.every", 18, "0 and 10 years"),
    ("huge pause", '"pause 30d"', '"pause 11y"', "on_reply", 4, "0 and 10 years"),
]


@pytest.mark.parametrize(
    ("old", "new", "key", "line", "fragment"),
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
def test_errors_name_file_line_and_key(
    old: str, new: str, key: str, line: int, fragment: str
) -> None:
    assert old in GOOD
    with pytest.raises(SequenceError) as caught:
        parse_sequence(FILE, GOOD.replace(old, new, 1), windows=WINDOWS)
    error = caught.value
    assert error.file == str(FILE)
    assert error.key == key
    assert error.line == line
    assert fragment in error.message
    assert str(error).startswith(f"{FILE}:{line}: {key}: ")


def test_invalid_toml_names_the_line() -> None:
    with pytest.raises(SequenceError) as caught:
        parse_sequence(FILE, GOOD.replace('after = "2w"', "after = 2w"), windows=WINDOWS)
    assert caught.value.line == 14
    assert "not valid TOML" in caught.value.message


def test_empty_sequence_is_an_error() -> None:
    with pytest.raises(SequenceError, match="at least one"):
        parse_sequence(FILE, 'name = "empty"\n', windows=WINDOWS)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_broken_file_is_reported_and_others_load(tmp_path: Path) -> None:
    """One bad file does not stop the others; its sequence is held."""
    write(tmp_path, "a.toml", GOOD)
    write(tmp_path, "b.toml", GOOD.replace("new-acquaintance", "clients").replace("afer", "x"))
    broken = write(
        tmp_path, "c.toml", GOOD.replace("new-acquaintance", "prospects").replace('"2w"', '"2"')
    )
    write(tmp_path, "notes.txt", "not a sequence")
    sequences, errors = load_sequences(tmp_path, windows=WINDOWS)
    assert sorted(sequences) == ["clients", "new-acquaintance"]
    assert len(errors) == 1
    assert errors[0].file == str(broken)
    assert errors[0].key == "steps[1].after"
    assert held_sequences(errors) == {"prospects"}


def test_invalid_toml_holds_the_name_it_gives(tmp_path: Path) -> None:
    write(tmp_path, "x.toml", 'name = "clients"\n[[steps]\n')
    sequences, errors = load_sequences(tmp_path, windows=WINDOWS)
    assert sequences == {}
    assert held_sequences(errors) == {"clients"}


def test_deeply_nested_file_is_reported_and_others_load(tmp_path: Path) -> None:
    """tomllib's RecursionError on 5,000 nested arrays is one located problem, not a crash."""
    write(tmp_path, "a.toml", GOOD)
    deep = write(tmp_path, "deep.toml", 'name = "deep"\nx = ' + "[" * 5000 + "]" * 5000 + "\n")
    sequences, errors = load_sequences(tmp_path, windows=WINDOWS)
    assert list(sequences) == ["new-acquaintance"]
    assert [(e.file, e.message) for e in errors] == [
        (str(deep), "not usable TOML: arrays or tables are nested too deeply")
    ]
    assert held_sequences(errors) == {"deep"}


def test_duplicate_names_are_errors(tmp_path: Path) -> None:
    """The second file with a taken name is an error, and the ambiguous name is held."""
    write(tmp_path, "a.toml", GOOD)
    second = write(tmp_path, "b.toml", GOOD)
    sequences, errors = load_sequences(tmp_path, windows=WINDOWS)
    assert list(sequences) == ["new-acquaintance"]
    assert [(e.file, e.key, e.line) for e in errors] == [(str(second), "name", 1)]
    assert "a.toml" in errors[0].message
    assert held_sequences(errors) == {"new-acquaintance"}


def test_missing_folder_holds_nothing(tmp_path: Path) -> None:
    assert load_sequences(tmp_path / "nope", windows=WINDOWS) == ({}, [])


def test_enrolment_round_trips() -> None:
    enrolment = Enrolment(
        contact="ada@example.com",
        sequence="new-acquaintance",
        enrolled_at=datetime(2026, 3, 6, 17, 0, tzinfo=UTC),
        state="paused",
        paused_until=datetime(2026, 4, 5, 17, 0, tzinfo=UTC),
        source="tag",
    )
    doc = enrolment.to_doc()
    assert doc["enrolled_at"] == "2026-03-06T17:00:00+00:00"
    assert Enrolment.from_doc(doc) == enrolment
    assert enrolment.resumed().state == "active"
    assert enrolment.resumed().paused_until is None
    assert enrolment.stopped("replied").stopped_reason == "replied"


def test_tag_enrolments_only_new_active_contacts() -> None:
    sequences = {"new-acquaintance": parse_sequence(FILE, GOOD, windows=WINDOWS)}
    now = datetime(2026, 3, 6, 17, 0, tzinfo=UTC)
    contacts = [
        Contact("a@example.com", tags=("met",)),
        Contact("b@example.com", tags=("met",), status=Status.UNSUBSCRIBED),
        Contact("c@example.com", tags=("client",)),
        Contact("d@example.com", tags=("met",)),
    ]
    found = tag_enrolments(contacts, sequences, {("d@example.com", "new-acquaintance")}, now=now)
    assert [(e.contact, e.sequence, e.source, e.enrolled_at) for e in found] == [
        ("a@example.com", "new-acquaintance", "tag", now)
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", "none"),
        ('unsubscribe = "none"\n', "none"),
        ('unsubscribe = "headers"\n', "headers"),
        ('unsubscribe = "footer"\n', "footer"),
    ],
)
def test_a_sequence_is_personal_unless_it_opts_in(line: str, expected: str) -> None:
    """No list headers and no footer by default; the file may ask for them."""
    text = GOOD.replace('window = "default"\n', f'window = "default"\n{line}', 1)
    assert parse_sequence(FILE, text, windows=WINDOWS).unsubscribe == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('"fotter"', "did you mean 'footer'?"),
        ('"yes"', "unsubscribe must be 'none', 'headers', 'footer'"),
        ("true", "must be a string"),
    ],
)
def test_a_wrong_unsubscribe_names_file_and_line(value: str, fragment: str) -> None:
    text = GOOD.replace('window = "default"\n', f'window = "default"\nunsubscribe = {value}\n', 1)
    with pytest.raises(SequenceError) as caught:
        parse_sequence(FILE, text, windows=WINDOWS)
    error = caught.value
    assert (error.file, error.line, error.key) == (str(FILE), 6, "unsubscribe")
    assert fragment in error.message
