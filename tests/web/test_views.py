"""What the pages derive from the store, kept up to date, equals what a fresh read gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from toma.reports.dashboard import traffic
from toma.store import CONTACTS, CONVERSATIONS, MESSAGES, SYNC, TinyStore
from toma.web.snapshot import Snapshot
from toma.web.traffic import TrafficView

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def sent(contact: str, hours: int, state: str = "sent") -> dict[str, object]:
    return {
        "contact": contact,
        "kind": "sequence",
        "ref": "keep/first",
        "state": state,
        "sent_at": (NOW + timedelta(hours=hours)).isoformat(),
        "subject": "Hello",
    }


def reply(contact: str, hours: int) -> dict[str, object]:
    return {
        "contact": contact,
        "kind": "reply",
        "received_at": (NOW + timedelta(hours=hours)).isoformat(),
        "subject": "Re: Hello",
        "actions": ["stopped keep"],
    }


def test_a_snapshot_follows_writes_from_another_store_instance(tmp_path: Path) -> None:
    mine, theirs = TinyStore(tmp_path), TinyStore(tmp_path)
    try:
        snapshot = Snapshot()
        assert snapshot.sync(mine)
        before = snapshot.version(MESSAGES, CONTACTS)
        with theirs.transaction() as tx:
            tx.put(MESSAGES, "m1", sent("a@example.org", 1))
            tx.put(SYNC, "daemon", {"now": NOW.isoformat()})
        mine.refresh()
        assert snapshot.sync(mine)
        assert snapshot.get(MESSAGES, "m1") == sent("a@example.org", 1)
        assert snapshot.version(MESSAGES, CONTACTS) != before
        quiet = snapshot.version(CONTACTS)
        with theirs.transaction() as tx:
            tx.delete(MESSAGES, "m1")
        mine.refresh()
        snapshot.sync(mine)
        assert snapshot.get(MESSAGES, "m1") is None
        assert snapshot.count(MESSAGES) == 0
        assert snapshot.version(CONTACTS) == quiet  # untouched tables keep their version
        assert not snapshot.sync(mine)
    finally:
        mine.close()
        theirs.close()


def test_the_traffic_kept_up_to_date_equals_the_traffic_read_afresh(tmp_path: Path) -> None:
    store = TinyStore(tmp_path)
    snapshot, view = Snapshot(), TrafficView()
    steps: list[dict[tuple[str, str], dict[str, object] | None]] = [
        {(MESSAGES, "a1"): sent("a@example.org", 1), (MESSAGES, "b1"): sent("b@example.org", 2)},
        {(CONVERSATIONS, "r1"): reply("a@example.org", 3)},  # a reply, unanswered
        {(MESSAGES, "a2"): sent("a@example.org", 4)},  # answered now
        {(MESSAGES, "c1"): sent("c@example.org", -5)},  # an old moment arrives late
        {(MESSAGES, "b1"): sent("b@example.org", 2, state="failed")},  # b's latest goes
        {(MESSAGES, "a1"): None, (CONVERSATIONS, "r1"): None},  # erased (forget)
        {(SYNC, "daemon"): {"now": NOW.isoformat()}},  # nothing of the traffic
        {(MESSAGES, "a2"): sent("a@example.org", -9)},  # a's latest moves back in time
        {(CONVERSATIONS, "r2"): reply("c@example.org", 6)},  # c's latest, seen
        {(CONVERSATIONS, "r2"): None, (MESSAGES, "c2"): sent("c@example.org", -2)},
        {(MESSAGES, "c1"): None, (MESSAGES, "c2"): None},  # c has nothing left
    ]
    try:
        for step in steps:
            with store.transaction() as tx:
                for (table, key), doc in step.items():
                    if doc is None:
                        tx.delete(table, key)
                    else:
                        tx.put(table, key, doc)
            snapshot.sync(store)
            assert view.traffic(snapshot) == traffic(snapshot), step
        # Read afresh once, at the start: after that, only what each write touched.
        assert view.assembled == 1
    finally:
        store.close()
