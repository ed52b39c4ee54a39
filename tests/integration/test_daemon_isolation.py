"""One sequence that cannot be planned does not stop the daemon sending the others."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from toma.core.outbox import MessageState, advance, new_record, sequence_key
from toma.daemon.worker import Worker
from toma.store import MESSAGES, open_store

from .projects import add_contacts, make_project

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday

OTHER = """name = "{name}"
enroll_tag = "{tag}"
window = "default"

[[steps]]
id = "hello"
after = "{after}"
template = "hello.md"
"""


def delivered(config: Path) -> int:
    folder = config.parent / "var" / "outbox"
    return sum(1 for path in folder.rglob("*") if path.is_file() and path.parent.name == "new")


def run_tick(config: Path) -> list[str]:
    store = open_store(config.parent / "var" / "data")
    try:
        worker = Worker(config, store, sync_inbox=False)
        worker.recover(NOW)
        return worker.run_once(NOW).problems
    finally:
        store.close()


def test_a_huge_duration_in_one_file_holds_only_that_sequence(tmp_path: Path) -> None:
    """`after = "99999999999999y"` once crashed every tick with an OverflowError: 0 of 20 sent."""
    config = make_project(tmp_path, contacts=20, now=NOW)
    (tmp_path / "sequences" / "huge.toml").write_text(
        OTHER.format(name="huge", tag="friend", after="99999999999999y"), encoding="utf-8"
    )
    problems = run_tick(config)
    assert delivered(config) == 20
    assert len(problems) == 1
    assert "huge.toml" in problems[0]
    assert "10 years" in problems[0]


def test_a_record_at_the_end_of_the_calendar_holds_only_its_sequence(tmp_path: Path) -> None:
    """A message recorded as sent in year 9999 (a clock gone wrong) stops nobody else.

    The file is valid, so only the planner's own isolation stands between that
    record and every other contact's mail.
    """
    config = make_project(tmp_path, contacts=20, now=NOW)
    (tmp_path / "sequences" / "other.toml").write_text(
        OTHER.format(name="other", tag="far", after="0d")
        + '\n[[steps]]\nid = "again"\nafter = "30d"\ntemplate = "hello.md"\n',
        encoding="utf-8",
    )
    add_contacts(tmp_path, 1, tag="far", now=NOW, start=100)
    far = "person100@example.org"
    store = open_store(tmp_path / "var" / "data")
    try:
        moment = datetime(9999, 12, 30, tzinfo=UTC)
        sent = new_record(
            key=sequence_key(far, "other", "hello"),
            contact=far,
            kind="sequence",
            ref="other/hello",
            template="hello.md",
            due_at=moment,
            at=moment,
            sequence="other",
            step="hello",
            state=MessageState.SENDING,
        )
        sent = advance(sent, MessageState.SENT, at=moment)
        with store.transaction() as tx:
            tx.put(MESSAGES, sent.key, sent.to_doc())
    finally:
        store.close()
    problems = run_tick(config)
    assert delivered(config) == 20
    assert len(problems) == 1
    assert "'other' cannot be planned for person100@example.org" in problems[0]
    assert "other.toml" in problems[0]
