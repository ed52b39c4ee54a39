"""A batch's position after each message: stopping part-way resumes exactly after it."""

from __future__ import annotations

from pathlib import Path

from toma.inbox.base import Batch, Cursor, Inbound
from toma.inbox.maildir import MaildirSource


def deliver(maildir: Path, name: str) -> None:
    body = f"Message-ID: <{name}@example.com>\r\nSubject: {name}\r\n\r\nhello\r\n".encode()
    (maildir / "tmp" / name).write_bytes(body)
    (maildir / "tmp" / name).rename(maildir / "new" / name)


def test_maildir_positions_are_the_cursors_of_shorter_fetches(tmp_path: Path) -> None:
    """After k messages, the position is exactly the cursor a fetch of k would have given;
    a fetch from it hands over the rest and nothing before."""
    source = MaildirSource(tmp_path / "Maildir")
    for number in range(12):
        deliver(tmp_path / "Maildir", f"m{number:02d}")
    first = source.fetch(None, limit=5)
    deliver(tmp_path / "Maildir", "m12")  # arrives between two fetches
    for start in (None, first.cursor):
        whole = source.fetch(start, limit=100)
        assert len(whole.positions) == len(whole.messages)
        for count in range(1, len(whole.messages) + 1):
            assert whole.cursor_after(count) == source.fetch(start, limit=count).cursor
            rest = source.fetch(whole.cursor_after(count), limit=100)
            assert [m.key for m in rest.messages] == [m.key for m in whole.messages[count:]]


def test_a_batch_without_positions_is_taken_whole() -> None:
    messages = tuple(Inbound(key=f"k{n}", data=b"x", received_at=None) for n in range(3))
    end = Cursor(folder="INBOX", uidvalidity=1, last_uid=9)
    batch = Batch(messages=messages, cursor=end)
    assert batch.cursor_after(3) == end
    assert batch.cursor_after(1) is None and batch.cursor_after(0) is None
    known = Batch(
        messages=messages,
        cursor=end,
        positions=tuple(Cursor(folder="INBOX", uidvalidity=1, last_uid=uid) for uid in (2, 5, 7)),
    )
    assert known.cursor_after(2) == Cursor(folder="INBOX", uidvalidity=1, last_uid=5)
    assert known.cursor_after(0) is None
    assert known.cursor_after(3) == end  # past the last UID handed over, expunged ones too
