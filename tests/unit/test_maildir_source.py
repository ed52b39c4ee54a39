"""MaildirSource: reads new/ and cur/ without changing anything, pages by change time."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from toma.inbox.base import Cursor, InboxError
from toma.inbox.maildir import OVERLAP_NS, MaildirSource, unique_name


def deliver(maildir: Path, name: str, *, sub: str = "new", flags: str = "") -> Path:
    """Write through tmp/ and rename into place, as a delivery agent does."""
    body = f"Message-ID: <{name}@example.com>\r\nSubject: {name}\r\n\r\nhello\r\n".encode()
    tmp = maildir / "tmp" / name
    tmp.write_bytes(body)
    target = maildir / sub / (name + (f":2,{flags}" if sub == "cur" else ""))
    tmp.rename(target)
    return target


def snapshot(maildir: Path) -> list[tuple[str, int, int]]:
    """Every file under the Maildir with its size and modification time."""
    return sorted(
        (str(p.relative_to(maildir)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in maildir.rglob("*")
        if p.is_file()
    )


def order_on_disk(maildir: Path) -> list[str]:
    """What the source promises: change time, then name."""
    found = [
        (p.stat().st_ctime_ns, unique_name(p.name))
        for sub in ("new", "cur")
        for p in (maildir / sub).iterdir()
        if not p.name.startswith(".")
    ]
    return ["maildir:" + name for _, name in sorted(found)]


def fetch_all(source: MaildirSource, cursor: Cursor | None, limit: int) -> tuple[list[str], Cursor]:
    keys: list[str] = []
    for _ in range(100):  # bounded: far more rounds than any test needs
        batch = source.fetch(cursor, limit=limit)
        keys += [m.key for m in batch.messages]
        cursor = batch.cursor
        if len(batch.messages) < limit:
            return keys, cursor
    raise AssertionError("the fetch loop did not end")


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    path = tmp_path / "Maildir"
    MaildirSource(path)
    return path


class TestCreation:
    def test_missing_maildir_is_created_owner_only(self, tmp_path: Path) -> None:
        """A new project works: the Maildir and its three folders appear, mode 0700."""
        path = tmp_path / "mail" / "inbox"
        source = MaildirSource(path)
        assert source.fetch(None).messages == ()
        for sub in ("", "new", "cur", "tmp"):
            assert stat.S_IMODE((path / sub).stat().st_mode) == 0o700

    def test_a_file_in_the_way_is_a_clear_error(self, tmp_path: Path) -> None:
        (tmp_path / "inbox").write_text("not a folder")
        with pytest.raises(InboxError, match=r"cannot use .*inbox as a Maildir") as caught:
            MaildirSource(tmp_path / "inbox")
        assert caught.value.key == "inbox.path"


class TestReading:
    def test_reads_new_and_cur_in_change_time_order(self, maildir: Path) -> None:
        """Both folders are read; the order is the order the files arrived in."""
        deliver(maildir, "zeta")
        deliver(maildir, "alpha", sub="cur", flags="S")
        deliver(maildir, "mid")
        batch = MaildirSource(maildir).fetch(None)
        assert [m.key for m in batch.messages] == order_on_disk(maildir)
        assert {m.key for m in batch.messages} == {"maildir:zeta", "maildir:alpha", "maildir:mid"}
        assert batch.resynced is False

    def test_order_ignores_modification_time(self, maildir: Path) -> None:
        """A message copied in with last year's mtime still comes after what came before it."""
        deliver(maildir, "first")
        late = deliver(maildir, "late")
        os.utime(late, ns=(0, 1_000_000_000))  # mtime 1970; the change time moves forward
        keys = [m.key for m in MaildirSource(maildir).fetch(None).messages]
        assert keys == ["maildir:first", "maildir:late"]

    def test_message_content_and_received_at(self, maildir: Path) -> None:
        path = deliver(maildir, "one")
        os.utime(path, (1_700_000_000, 1_700_000_000))
        (message,) = MaildirSource(maildir).fetch(None).messages
        assert message.data == path.read_bytes()
        assert message.received_at == datetime.fromtimestamp(1_700_000_000, tz=UTC)

    def test_dot_files_and_folders_are_not_messages(self, maildir: Path) -> None:
        (maildir / "new" / ".hidden").write_bytes(b"x")
        (maildir / "cur" / "subdir").mkdir()
        deliver(maildir, "real")
        keys = [m.key for m in MaildirSource(maildir).fetch(None).messages]
        assert keys == ["maildir:real"]

    def test_nothing_is_moved_or_changed(self, maildir: Path) -> None:
        """new/ stays new/, no flags are added: the owner's mail client decides those."""
        deliver(maildir, "unread")
        deliver(maildir, "read", sub="cur", flags="S")
        before = snapshot(maildir)
        source = MaildirSource(maildir)
        fetch_all(source, None, limit=1)
        source.close()
        assert snapshot(maildir) == before


class TestKeys:
    @pytest.mark.parametrize(
        ("filename", "unique"),
        [
            ("1700000000.M1P2.host", "1700000000.M1P2.host"),
            ("1700000000.M1P2.host:2,", "1700000000.M1P2.host"),
            ("1700000000.M1P2.host:2,RS", "1700000000.M1P2.host"),
            ("1700000000.M1P2.host,S=1234:2,S", "1700000000.M1P2.host,S=1234"),
            ("1700000000.M1P2.host!2,S", "1700000000.M1P2.host"),
        ],
    )
    def test_unique_name(self, filename: str, unique: str) -> None:
        assert unique_name(filename) == unique

    def test_key_survives_a_mail_client_moving_the_message(self, maildir: Path) -> None:
        """Read in new/, then moved to cur/ with a flag: the same key, which the caller dedupes."""
        path = deliver(maildir, "1700000000.M1P2.host")
        source = MaildirSource(maildir)
        first = source.fetch(None)
        path.rename(maildir / "cur" / "1700000000.M1P2.host:2,S")
        again = source.fetch(None).messages
        assert [m.key for m in first.messages] == [m.key for m in again]
        assert first.messages[0].key == "maildir:1700000000.M1P2.host"


class TestPaging:
    def test_limit_and_cursor_page_through_everything_once(self, maildir: Path) -> None:
        for number in range(7):
            deliver(maildir, f"m{number}")
        source = MaildirSource(maildir)
        batch = source.fetch(None, limit=3)
        assert len(batch.messages) == 3
        keys, cursor = fetch_all(source, None, limit=3)
        assert keys == order_on_disk(maildir)
        assert len(set(keys)) == 7
        assert source.fetch(cursor, limit=3).messages == ()

    def test_resume_after_restart_sees_only_new_mail(self, maildir: Path) -> None:
        """The cursor survives a trip through the store (to_doc / from_doc)."""
        for number in range(3):
            deliver(maildir, f"old{number}")
        _keys, cursor = fetch_all(MaildirSource(maildir), None, limit=2)
        stored = Cursor.from_doc(cursor.to_doc())
        deliver(maildir, "new0")
        keys, _ = fetch_all(MaildirSource(maildir), stored, limit=2)
        assert keys == ["maildir:new0"]

    def test_message_arriving_within_the_clock_granularity_is_not_lost(self, maildir: Path) -> None:
        """A file whose change time is not after the cursor's (same tick) is still read."""
        deliver(maildir, "b-first")
        _keys, cursor = fetch_all(MaildirSource(maildir), None, limit=10)
        assert cursor.changed_ns is not None
        # As if it arrived in the same clock tick with a name sorting before.
        back_dated = Cursor(changed_ns=cursor.changed_ns + OVERLAP_NS // 2, recent=cursor.recent)
        deliver(maildir, "a-second")
        keys, _ = fetch_all(MaildirSource(maildir), back_dated, limit=10)
        assert keys == ["maildir:a-second"]

    def test_cursor_remembers_only_recent_names(self, maildir: Path) -> None:
        deliver(maildir, "one")
        _keys, cursor = fetch_all(MaildirSource(maildir), None, limit=10)
        assert cursor.recent == ("one",)
        assert Cursor.from_doc(cursor.to_doc()) == cursor

    def test_limit_must_be_positive(self, maildir: Path) -> None:
        with pytest.raises(ValueError, match="limit"):
            MaildirSource(maildir).fetch(None, limit=0)


class TestCursorDoc:
    @pytest.mark.parametrize(
        "cursor",
        [
            Cursor(),
            Cursor(folder="INBOX", uidvalidity=17, last_uid=4),
            Cursor(changed_ns=5, recent=("a", "b")),
        ],
    )
    def test_round_trip(self, cursor: Cursor) -> None:
        assert Cursor.from_doc(cursor.to_doc()) == cursor

    def test_imap_doc_shape(self) -> None:
        doc = Cursor(folder="INBOX", uidvalidity=17, last_uid=4).to_doc()
        assert doc == {"folder": "INBOX", "uidvalidity": 17, "last_uid": 4}

    def test_missing_doc_is_the_start(self) -> None:
        assert Cursor.from_doc(None) == Cursor()
        assert Cursor.from_doc({}) == Cursor()

    @pytest.mark.parametrize(
        "doc",
        [{"uidvalidity": "17"}, {"last_uid": -1}, {"last_uid": True}, {"recent": "abc"}],
    )
    def test_bad_doc_is_a_clear_error(self, doc: dict[str, object]) -> None:
        with pytest.raises(InboxError, match="stored inbox position"):
            Cursor.from_doc(doc)
