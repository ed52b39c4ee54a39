"""`toma outbox`: the owner sees the keys of messages in doubt and releases them."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from toma.core.outbox import HANDED, MessageState, advance, new_record, sequence_key
from toma.store import MESSAGES, open_store

from .test_sequences_cli import add, make, sent, sequence, tick, toma

MONDAY = "2026-03-09T10:00:00+01:00"


def crashed_after_handover(folder: Path, address: str) -> str:
    """The record a SIGKILL after the hand-over leaves: sending, handed to the server."""
    key = sequence_key(address, "hello", "first")
    at = datetime.fromisoformat(MONDAY)
    record = new_record(
        key=key,
        contact=address,
        kind="sequence",
        ref="hello/first",
        template="note.md",
        due_at=at,
        at=at,
        sequence="hello",
        step="first",
        state=MessageState.SENDING,
    )
    store = open_store(folder / "var" / "data")
    try:
        with store.transaction() as tx:
            tx.put(MESSAGES, key, replace(record, handover=HANDED).to_doc())
    finally:
        store.close()
    return key


def test_release_sends_an_unknown_message_again_at_the_next_tick(tmp_path: Path) -> None:
    folder = make(tmp_path, sequence("hello", "met", ("first", "0h")))
    for address in ("ann@example.org", "bob@example.org", "cy@example.org"):
        add(folder, address, "met", now=MONDAY)
    ann = crashed_after_handover(folder, "ann@example.org")
    cy = crashed_after_handover(folder, "cy@example.org")
    tick(folder, MONDAY)  # the restart: both in doubt, never resent on their own
    assert [to for to, _subject, _date in sent(folder)] == ["bob@example.org"]
    tick(folder, "2026-03-09T11:00:00+01:00")
    assert len(sent(folder)) == 1

    listed = json.loads(toma(folder, "outbox", "list", "--state", "unknown", "--json").output)
    assert sorted(item["key"] for item in listed) == sorted([ann, cy])
    assert all("may or may not" in item["detail"] for item in listed)
    text = toma(folder, "outbox", "list", "--state", "unknown").output
    assert ann in text and cy in text
    status = toma(folder, "status").output
    assert "Once you have checked one did not arrive: toma outbox release KEY" in status
    in_doubt = json.loads(toma(folder, "status", "--json").output)["unknown"]
    assert sorted(item["key"] for item in in_doubt) == sorted([ann, cy])

    result = toma(
        folder,
        "outbox",
        "release",
        ann,
        "--contact",
        "CY@example.org",
        "--now",
        "2026-03-09T11:30:00+01:00",
    )
    assert result.exit_code == 0, result.output
    assert f"released {ann}: the next tick sends it" in result.output
    assert f"released {cy}" in result.output
    planned = json.loads(toma(folder, "outbox", "list", "--state", "planned", "--json").output)
    assert {item["key"] for item in planned} == {ann, cy}
    assert all(item["released_by"] and item["released_at"] for item in planned)

    tick(folder, "2026-03-09T12:00:00+01:00")
    assert sorted(to for to, _subject, _date in sent(folder)) == [
        "ann@example.org",
        "bob@example.org",
        "cy@example.org",
    ]
    done = json.loads(
        toma(folder, "outbox", "list", "--contact", "ann@example.org", "--json").output
    )
    assert [(item["state"], bool(item["released_by"])) for item in done] == [("sent", True)]
    tick(folder, "2026-03-10T12:00:00+01:00")
    assert len(sent(folder)) == 3  # once each

    # Only an unknown message can be released: one line, nothing changed.
    again = toma(folder, "outbox", "release", ann)
    assert again.exit_code == 1
    assert again.output.strip().splitlines() == [
        f"toma: contact ann@example.org: {ann} is sent, not unknown: nothing released"
    ]
    missing = toma(folder, "outbox", "release", "sequence/hello/first/nobody@example.org")
    assert missing.exit_code == 1
    assert "no message with the key" in missing.output
    assert toma(folder, "outbox", "release").exit_code == 2  # nothing named


def test_a_crash_before_the_handover_is_sent_at_the_next_tick(tmp_path: Path) -> None:
    """Marked sending but never handed to the server: not in doubt, it simply goes."""
    folder = make(tmp_path, sequence("hello", "met", ("first", "0h")))
    add(folder, "ann@example.org", "met", now=MONDAY)
    key = sequence_key("ann@example.org", "hello", "first")
    at = datetime.fromisoformat(MONDAY)
    record = advance(
        new_record(
            key=key,
            contact="ann@example.org",
            kind="sequence",
            ref="hello/first",
            template="note.md",
            due_at=at,
            at=at,
            sequence="hello",
            step="first",
        ),
        MessageState.SENDING,
        at=at,
    )
    store = open_store(folder / "var" / "data")
    try:
        with store.transaction() as tx:
            tx.put(MESSAGES, key, replace(record, handover="pending").to_doc())
    finally:
        store.close()
    tick(folder, MONDAY)
    assert [to for to, _subject, _date in sent(folder)] == ["ann@example.org"]
    assert json.loads(toma(folder, "outbox", "list", "--json").output)[0]["state"] == "sent"
