"""The dashboard's status report, kept up to date write by write, is ``toma status``'s."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from toma.core.outbox import MessageState, OutboxRecord, advance, new_record
from toma.reports.status import gather
from toma.store import MESSAGES, SYNC, Store, open_store
from toma.web.snapshot import Snapshot
from toma.web.statusview import StatusView

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def record(n: int, kind: str = "sequence", ref: str = "keep/first") -> OutboxRecord:
    return new_record(
        key=f"m{n}",
        contact=f"p{n % 4}@example.org",
        kind=kind,
        ref=ref,
        template="hello.md",
        due_at=NOW - timedelta(hours=n),
        at=NOW - timedelta(hours=n),
        state=MessageState.SENDING,
    )


def put(store: Store, *records: OutboxRecord) -> None:
    with store.transaction() as tx:
        for r in records:
            tx.put(MESSAGES, r.key, r.to_doc())


def test_the_report_follows_every_write_as_reading_it_afresh_would(tmp_path: Path) -> None:
    with open_store(tmp_path / "data") as store, open_store(tmp_path / "data") as other:
        at = NOW
        put(other, *(advance(record(n), MessageState.SENT, at=at) for n in range(8)))
        put(other, record(20, kind="newsletter", ref="spring"))
        snapshot, view = Snapshot(), StatusView()

        def same() -> None:
            store.refresh()
            snapshot.sync(store)
            assert view.report(snapshot) == gather(store)

        same()
        failed = advance(record(9), MessageState.FAILED, at=at, code=550, detail="no such user")
        unknown = advance(record(10), MessageState.UNKNOWN, at=at, detail="cut off")
        retry = advance(
            record(11), MessageState.PLANNED, at=at, code=451, next_attempt_at=at + timedelta(1)
        )
        put(other, failed, unknown, retry)
        same()
        assert [r.key for r in view.report(snapshot).failed] == ["m9"]
        # The retry went; the newsletter's only copy failed, then was taken out.
        put(other, advance(retry, MessageState.SENDING, at=at))
        put(other, advance(record(20, "newsletter", "spring"), MessageState.FAILED, at=at))
        same()
        with other.transaction() as tx:
            tx.delete(MESSAGES, "m20")
            tx.delete(MESSAGES, "m9")
            tx.put(SYNC, "status", {"now": "2026-03-02T09:00:00+00:00"})
        same()
        report = view.report(snapshot)
        assert report.newsletters == [] and report.failed == []
        assert report.states == {"sent": 8, "unknown": 1, "sending": 1}
