"""The Maildir transport: complete messages in new/, owner-only, never half-written."""

from __future__ import annotations

import asyncio
import mailbox
import os
import stat
from collections.abc import Coroutine
from email import message_from_bytes
from pathlib import Path
from typing import Any, TypeVar

import pytest

from toma.errors import TransportError
from toma.transports import Envelope, MaildirTransport, Outcome, Result, send_all
from toma.transports.maildir import unique_name

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, 30))


def envelope(number: int) -> Envelope:
    key = f"key-{number}"
    data = (
        "From: Owner <owner@example.com>\r\n"
        f"To: person{number}@example.com\r\n"
        f"Subject: Hello {number}\r\n"
        f"Message-ID: <{key}@toma.test>\r\n"
        "\r\n"
        f"Body of message {number}.\r\n"
        ".a dot line stays as it is\r\n"
    ).encode()
    return Envelope(
        key=key, sender="owner@example.com", recipients=(f"person{number}@example.com",), data=data
    )


async def deliver(path: Path, envelopes: list[Envelope]) -> list[Result]:
    async with MaildirTransport(path) as transport:
        return await send_all(transport, envelopes)


class TestMaildirTransport:
    def test_creates_an_owner_only_maildir(self, tmp_path: Path) -> None:
        """tmp, new and cur are created with mode 0700, parents included."""
        root = tmp_path / "var" / "outbox"
        run(deliver(root, []))
        for directory in (root, root / "tmp", root / "new", root / "cur"):
            assert directory.is_dir()
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700

    def test_each_message_lands_once_in_new(self, tmp_path: Path) -> None:
        """Every envelope is SENT, one file each in new/, nothing left in tmp/."""
        envelopes = [envelope(n) for n in range(25)]
        results = run(deliver(tmp_path, envelopes))
        assert [r.key for r in results] == [e.key for e in envelopes]
        assert {r.outcome for r in results} == {Outcome.SENT}
        files = sorted((tmp_path / "new").iterdir())
        assert len(files) == 25
        assert list((tmp_path / "tmp").iterdir()) == []
        assert {f"new/{f.name}" for f in files} == {r.detail for r in results}
        for file in files:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600

    def test_messages_are_complete_with_local_line_endings(self, tmp_path: Path) -> None:
        """The stored message is the sent one, with LF line endings, readable by mailbox."""
        sent = envelope(7)
        (result,) = run(deliver(tmp_path, [sent]))
        stored = (tmp_path / result.detail).read_bytes()
        assert stored == sent.data.replace(b"\r\n", b"\n")
        box = mailbox.Maildir(tmp_path, create=False)
        (message,) = list(box)
        assert message["Message-ID"] == "<key-7@toma.test>"
        assert message_from_bytes(stored).get_payload() == message.get_payload()

    def test_names_are_unique(self) -> None:
        """Names carry time, pid, a counter and randomness: no two deliveries collide."""
        names = {unique_name("host") for _ in range(10_000)}
        assert len(names) == 10_000
        assert all("/" not in name and ":" not in name for name in names)

    def test_an_unusable_path_is_an_error_at_open(self, tmp_path: Path) -> None:
        """A file where the Maildir should be is reported when the transport opens."""
        blocker = tmp_path / "outbox"
        blocker.write_text("not a directory")
        with pytest.raises(TransportError, match="Maildir"):
            run(deliver(blocker, [envelope(1)]))

    def test_a_write_failure_is_temporary(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When tmp/ cannot be written the message is TEMPORARY and nothing reaches new/."""

        def full_disk(*args: Any, **kwargs: Any) -> int:
            raise OSError(28, "No space left on device")

        async def scenario() -> Result:
            async with MaildirTransport(tmp_path) as transport:
                monkeypatch.setattr(os, "open", full_disk)
                return await transport.send(envelope(1))

        result = run(scenario())
        assert result.outcome is Outcome.TEMPORARY
        assert "No space left" in result.detail
        assert list((tmp_path / "new").iterdir()) == []

    def test_a_failed_link_leaves_nothing_behind(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the move into new/ fails, the tmp/ file is removed and the result is TEMPORARY."""

        def broken_link(source: Any, target: Any) -> None:
            raise OSError(28, "No space left on device")

        async def scenario() -> Result:
            async with MaildirTransport(tmp_path) as transport:
                monkeypatch.setattr(os, "link", broken_link)
                return await transport.send(envelope(1))

        result = run(scenario())
        assert result.outcome is Outcome.TEMPORARY
        assert "No space left" in result.detail
        assert list((tmp_path / "tmp").iterdir()) == []
        assert list((tmp_path / "new").iterdir()) == []

    def test_without_hard_links_it_renames(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A filesystem without links (EXDEV, EPERM…) still gets the message, by rename."""

        def no_links(source: Any, target: Any) -> None:
            raise OSError(1, "Operation not permitted")

        async def scenario() -> Result:
            async with MaildirTransport(tmp_path) as transport:
                monkeypatch.setattr(os, "link", no_links)
                return await transport.send(envelope(1))

        result = run(scenario())
        assert result.outcome is Outcome.SENT
        assert len(list((tmp_path / "new").iterdir())) == 1
        assert list((tmp_path / "tmp").iterdir()) == []

    def test_send_needs_an_open_transport(self, tmp_path: Path) -> None:
        with pytest.raises(TransportError, match="not open"):
            run(MaildirTransport(tmp_path).send(envelope(1)))


class TestHandOver:
    """The link into new/ is the hand-over: ``handing`` is asked just before it."""

    def test_handing_is_asked_with_the_message_in_tmp_and_none_in_new(self, tmp_path: Path) -> None:
        seen: list[tuple[str, int, int]] = []

        def handing(key: str) -> asyncio.Future[bool]:
            answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

            def check() -> None:
                # Answered only once the message is in tmp/: nothing may reach new/ first.
                if not names(tmp_path / "tmp"):
                    asyncio.get_running_loop().call_later(0.001, check)
                    return
                seen.append((key, len(names(tmp_path / "tmp")), len(names(tmp_path / "new"))))
                answer.set_result(True)

            check()
            return answer

        async def go() -> Result:
            async with MaildirTransport(tmp_path) as transport:
                return await transport.send(envelope(1), handing)

        result = run(go())
        assert result.outcome is Outcome.SENT
        assert seen == [("key-1", 1, 0)]
        assert len(names(tmp_path / "new")) == 1
        assert names(tmp_path / "tmp") == []

    def test_a_withdrawn_message_leaves_nothing(self, tmp_path: Path) -> None:
        def withdraw(key: str) -> asyncio.Future[bool]:
            answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            answer.set_result(False)
            return answer

        async def go() -> Result:
            async with MaildirTransport(tmp_path) as transport:
                return await transport.send(envelope(2), withdraw)

        result = run(go())
        assert (result.outcome, result.detail) == (
            Outcome.WITHDRAWN,
            "withdrawn before the hand-over",
        )
        assert names(tmp_path / "new") == [] and names(tmp_path / "tmp") == []

    def test_a_failed_hand_over_record_delivers_nothing_and_is_raised(self, tmp_path: Path) -> None:
        def disk_full(key: str) -> asyncio.Future[bool]:
            answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            answer.set_exception(OSError(28, "No space left on device"))
            return answer

        async def go() -> Result:
            async with MaildirTransport(tmp_path) as transport:
                return await transport.send(envelope(3), disk_full)

        with pytest.raises(OSError, match="No space left"):
            run(go())
        assert names(tmp_path / "new") == [] and names(tmp_path / "tmp") == []


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


class TestGrouping:
    """The sends under way share each trip to a thread, and each fsync of new/."""

    def test_concurrent_sends_share_the_fsyncs_of_new(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from toma import durable
        from toma.transports import maildir

        synced: list[Path] = []
        real = durable.fsync_dir

        def counting(path: Path) -> None:
            synced.append(path)
            real(path)

        monkeypatch.setattr(maildir, "fsync_dir", counting)

        def handed(key: str) -> asyncio.Future[bool]:
            answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            answer.set_result(True)
            return answer

        async def go(envelopes: list[Envelope]) -> list[Result]:
            async with MaildirTransport(tmp_path, concurrency=16) as transport:

                class Handing:
                    concurrency = transport.concurrency

                    async def send(self, envelope: Envelope) -> Result:
                        return await transport.send(envelope, handed)

                return await send_all(Handing(), envelopes)  # type: ignore[arg-type]

        envelopes = [envelope(n) for n in range(64)]
        results = run(go(envelopes))
        assert [r.outcome for r in results] == [Outcome.SENT] * 64
        assert len(names(tmp_path / "new")) == 64 and names(tmp_path / "tmp") == []
        # Every message is in new/ before its send ends, and new/ was fsynced after it.
        assert synced and all(path == tmp_path / "new" for path in synced)
        assert len(synced) <= 64 // 4, len(synced)

    def test_a_group_answers_each_caller_its_own_result_or_the_error(self) -> None:
        from toma.transports.maildir import Grouped

        calls: list[list[int]] = []

        def double(items: list[int]) -> list[int]:
            calls.append(items)
            return [2 * item for item in items]

        def broken(items: list[int]) -> list[int]:
            raise OSError(5, "Input/output error")

        async def go() -> tuple[list[int], list[BaseException | int]]:
            doubling = Grouped(double)
            answers = await asyncio.gather(*(doubling.run(n) for n in range(10)))
            failing = Grouped(broken)
            errors = await asyncio.gather(
                *(failing.run(n) for n in range(3)), return_exceptions=True
            )
            return answers, errors

        answers, errors = run(go())
        assert answers == [2 * n for n in range(10)]
        assert len(calls) < 10 and sorted(n for call in calls for n in call) == list(range(10))
        assert [type(e) for e in errors] == [OSError] * 3

    def test_a_group_cancelled_leaves_nobody_waiting(self) -> None:
        """The loop ending cancels the group's task: its callers, and those waiting for the
        next group, are cancelled too instead of waiting for ever."""
        import threading

        from toma.transports.maildir import Grouped

        started, release = threading.Event(), threading.Event()

        def slow(items: list[int]) -> list[int]:
            started.set()
            release.wait(10)
            return items

        async def go() -> list[BaseException | int]:
            grouped = Grouped(slow)
            first = asyncio.ensure_future(grouped.run(1))
            await asyncio.to_thread(started.wait, 10)
            second = asyncio.ensure_future(grouped.run(2))  # for the next group
            await asyncio.sleep(0)
            assert grouped._running is not None
            grouped._running.cancel()  # as the loop's end does
            try:
                return list(await asyncio.gather(first, second, return_exceptions=True))
            finally:
                release.set()

        outcomes = run(go())
        assert [type(o) for o in outcomes] == [asyncio.CancelledError] * 2
