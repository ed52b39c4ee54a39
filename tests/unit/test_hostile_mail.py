"""Mail from strangers cannot stop the reader: linear cost, bounds, and a budget.

Each attack is built here, bounded in size. Linearity is shown by counting the
Python calls a reading makes (a profile hook, deterministic on any machine) at
n and 4n of the hostile thing: linear work grows about fourfold, the quadratic
paths these tests were written against grew sixteenfold. Where the slow part is
a regular expression (one C call, invisible to the count), the size is chosen so
that the old pattern took minutes, and a generous ceiling of seconds is the check.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

from tests.hostile import hostile_messages
from toma.cli import main
from toma.core.reading import mimetext
from toma.core.reading.classify import READ_BUDGET, Reading, read_message
from toma.reports.explain import explain_files

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
KINDS = {"reply", "auto-reply", "bounce", "unsubscribe", "unknown"}
# What any reading of at most a few MB may take without a budget, on a slow and
# busy machine; the readings below take a fraction of it.
CEILING = 5.0


def message(
    *,
    headers: str = "",
    subject: str = "Re: hello",
    body: str = "Hello\r\n",
    sender: str = "Ann <ann@example.org>",
) -> bytes:
    return (
        f"From: {sender}\r\nTo: alex@example.com\r\nSubject: {subject}\r\n"
        "Message-ID: <m-1@example.org>\r\nDate: Fri, 20 Nov 2026 10:00:00 +0100\r\n"
        f"{headers}\r\n{body}"
    ).encode("utf-8", "surrogateescape")


def distinct_headers(count: int) -> bytes:
    """The issue's message: many header fields, each of its own name."""
    return message(headers="".join(f"X-Field-{i}: value {i}\r\n" for i in range(count)))


def encoded_subject(words: int) -> bytes:
    return message(subject=" ".join("=?utf-8?q?w=C3=A4rt?=" for _ in range(words)))


def calls(read: Callable[[], object]) -> int:
    """How many Python and C functions *read* calls: a machine-independent measure of work."""
    count = 0

    def hook(_frame: FrameType, event: str, _arg: object) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(hook)
    try:
        read()
    finally:
        sys.setprofile(None)
    return count


def timed(data: bytes, **options: object) -> tuple[Reading, float]:
    start = time.perf_counter()
    reading = read_message(data, now=NOW, **options)  # type: ignore[arg-type]
    return reading, time.perf_counter() - start


class TestHeaderFields:
    """Header fields are indexed once, and only the first FIELD_LIMIT of them are kept."""

    def test_work_grows_linearly_with_the_number_of_fields(self) -> None:
        small = calls(lambda: read_message(distinct_headers(2_000)))
        big = calls(lambda: read_message(distinct_headers(8_000)))
        # Linear: about 4x (less, since fields past the limit are only counted);
        # the per-name lookup this replaces made it 16x.
        assert big < 6 * small, (small, big)

    def test_two_hundred_thousand_fields_read_in_seconds(self) -> None:
        data = distinct_headers(200_000)
        assert len(data) > 2_400_000
        reading, seconds = timed(data)
        assert seconds < CEILING
        assert (reading.kind, reading.sender, reading.unread) == ("reply", "ann@example.org", None)
        # Five fields of its own, then the 200,000: all past the first 1,000 are ignored.
        assert f"199005 header fields past the first {mimetext.FIELD_LIMIT} ignored" in (
            reading.problems
        )

    def test_the_parsed_message_keeps_only_the_first_fields(self) -> None:
        problems: list[str] = []
        msg = mimetext.parse(distinct_headers(5_000), problems)
        assert len(msg.keys()) == mimetext.FIELD_LIMIT
        assert msg["From"] == "Ann <ann@example.org>"

    def test_fields_past_the_limit_are_not_read(self) -> None:
        """A From after 1,000 other fields is not seen: the reader never went that far."""
        data = (
            "".join(f"X-{i}: v\r\n" for i in range(1_500))
            + "From: Ann <ann@example.org>\r\nSubject: hi\r\n\r\nHello\r\n"
        ).encode()
        reading = read_message(data)
        assert reading.sender is None
        assert any("header fields past the first" in p for p in reading.problems)

    def test_a_huge_header_value_is_cut_before_it_is_decoded(self) -> None:
        reading, seconds = timed(message(headers=f"References: {'<a@b> ' * 400_000}\r\n"))
        assert seconds < CEILING
        assert reading.kind == "reply"
        assert "references header cut to 16 KB" in reading.problems


class TestEncodedWords:
    """RFC 2047 decoding is quadratic in the standard library: it sees at most VALUE_LIMIT."""

    def test_work_does_not_grow_past_the_value_limit(self) -> None:
        small = calls(lambda: read_message(encoded_subject(5_000)))
        big = calls(lambda: read_message(encoded_subject(20_000)))
        assert big < 2 * small, (small, big)

    def test_two_hundred_thousand_encoded_words(self) -> None:
        reading, seconds = timed(encoded_subject(200_000))
        assert seconds < CEILING
        assert reading.kind == "reply"
        # Adjacent encoded words join without the space between them (RFC 2047).
        assert reading.subject == "wärt" * (len(reading.subject) // 4)
        assert len(reading.subject) <= mimetext.VALUE_LIMIT
        assert "subject header cut to 16 KB" in reading.problems


class TestMimeBounds:
    """Parts, nesting, text and the message itself are read only up to their bounds."""

    def test_many_parts_stop_the_parser_at_the_part_limit(self) -> None:
        parts = "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 50_000
        data = message(
            headers='MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n',
            body=parts + "--b--\r\n",
        )
        reading, seconds = timed(data)
        assert seconds < CEILING
        assert reading.kind == "reply"
        assert f"more than {mimetext.PART_LIMIT} MIME parts: the rest is not read" in (
            reading.problems
        )

    def test_parts_walked_are_bounded(self) -> None:
        parts = "--b\r\n\r\nx\r\n" * 5_000
        problems: list[str] = []
        msg = mimetext.parse(
            message(headers='Content-Type: multipart/mixed; boundary="b"\r\n', body=parts), problems
        )
        assert len(list(mimetext.walk(msg))) <= mimetext.PART_LIMIT

    @staticmethod
    def nested(depth: int) -> bytes:
        layers = "".join(
            f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n" for i in range(depth)
        )
        return (
            b"From: Ann <ann@example.org>\r\nSubject: deep\r\n"
            + (layers + "Content-Type: text/plain\r\n\r\ndeep down\r\n").encode()
        )

    def test_deep_nesting_is_read_not_a_recursion_error(self) -> None:
        """5,000 levels once made the parser recurse until it failed; now it stops at 200 parts."""
        reading, seconds = timed(self.nested(5_000))
        assert seconds < CEILING
        assert reading.unread is None
        assert reading.sender == "ann@example.org"
        assert f"more than {mimetext.PART_LIMIT} MIME parts: the rest is not read" in (
            reading.problems
        )

    def test_nesting_is_walked_only_to_the_depth_limit(self) -> None:
        shallow = read_message(self.nested(mimetext.DEPTH_LIMIT))
        deep = read_message(self.nested(mimetext.DEPTH_LIMIT + 1))
        assert shallow.text == "deep down"
        assert deep.text == ""
        too_deep = f"MIME parts nested deeper than {mimetext.DEPTH_LIMIT} levels not read"
        assert too_deep in deep.problems
        assert too_deep not in shallow.problems
        assert list(mimetext.walk(mimetext.parse(self.nested(mimetext.DEPTH_LIMIT + 1), []))) == []

    def test_text_is_cut_to_the_text_limit(self) -> None:
        reading = read_message(message(body="word " * 400_000))
        assert reading.text is not None
        assert len(reading.text) <= mimetext.TEXT_LIMIT
        assert any("cut to" in p for p in reading.problems)

    def test_only_the_first_ten_megabytes_are_read(self) -> None:
        data = message(body="Thanks, see you Monday.\r\n\r\n" + "x" * (11 * 1024 * 1024))
        reading, seconds = timed(data)
        assert seconds < CEILING
        assert reading.kind == "reply"
        assert reading.text is not None and reading.text.startswith("Thanks, see you Monday.")
        assert "message cut to its first 10 MB" in reading.problems
        assert reading.unread is None


# Text that a pattern or parser could be slow on; each row is (what, message).
# Read by the code before the bounds, once each: the "<@>" reply 45 s, the
# repeated keyword 15 s, the punycode part 11 s, the closing followed by spaces,
# the unclosed HTML comment and the stray end tags over 60 s (stopped there).
# The other rows were read quickly before too; they stay as guards, each against
# a pattern that is quadratic on paper.
SLOW_PATTERNS = [
    ("attribution-like line", message(body="<@>" * 100 + "\r\n")),
    (
        "many empty lines in a bounce",
        message(
            sender="Mail Delivery System <MAILER-DAEMON@mx.example.net>",
            subject="Undelivered Mail Returned to Sender",
            body="This message could not be delivered.\r\n" + "\r\n" * 20_000,
        ),
    ),
    (
        "a keyword repeated in a bounce",
        message(
            sender="MAILER-DAEMON@mx.example.net",
            subject="failure notice",
            body="could not be delivered\r\n" + "mailbox" * 20_000,
        ),
    ),
    ("a run of letters without an @", message(body="a" * 200_000)),
    ("spaces after a closing", message(body="Hi\r\n\r\nBest" + " " * 100_000 + "x\r\n")),
    ("spaces in a From: line", message(body="Hi\r\n________\r\nfrom" + " " * 100_000 + "x\r\n")),
    ("spaces in a reply prefix", message(subject="re" + " " * 16_000 + "x")),
    (
        "an unclosed HTML comment",
        message(headers="Content-Type: text/html\r\n", body="<!--" * 60_000),
    ),
    (
        "stray HTML end tags",
        message(headers="Content-Type: text/html\r\n", body="<a>" * 40_000 + "</b>" * 40_000),
    ),
    (
        "a punycode text part",
        message(
            headers="Content-Type: text/plain; charset=punycode\r\n",
            body="a" * 100_000 + "-" + "99" * 100_000,
        ),
    ),
]


@pytest.mark.parametrize(("what", "data"), SLOW_PATTERNS, ids=[w for w, _ in SLOW_PATTERNS])
def test_no_pattern_is_slow_on_hostile_text(what: str, data: bytes) -> None:
    reading, seconds = timed(data)
    assert seconds < CEILING, what
    assert reading.unread is None, what


class TestBudget:
    """With a deadline, the reader gives up at the next check past it: the message is unread."""

    @staticmethod
    def stepping_clock(step: float = 1.0) -> Callable[[], float]:
        """A clock that moves on by *step* each time it is read."""
        ticks: Iterator[int] = iter(range(10**9))
        return lambda: next(ticks) * step

    def test_over_the_budget_is_unknown_and_says_why(self) -> None:
        clock = self.stepping_clock()
        reading = read_message(distinct_headers(5_000), deadline=5.0, clock=clock)
        assert reading.kind == "unknown"
        assert reading.unread == "over the reading budget (5 s)"
        assert "over the reading budget (5 s)" in reading.problems

    def test_within_the_budget_it_is_read(self) -> None:
        reading = read_message(message(), deadline=1e9, clock=self.stepping_clock())
        assert (reading.kind, reading.unread) == ("reply", None)

    def test_the_clock_is_read_inside_the_loops(self) -> None:
        """Checks come with the size of the message (slices, fields, parts, lines), not once."""

        def checks(data: bytes) -> int:
            reads = 0

            def clock() -> float:
                nonlocal reads
                reads += 1
                return 0.0

            read_message(data, deadline=1.0, clock=clock)
            return reads

        assert checks(distinct_headers(60_000)) > checks(distinct_headers(10)) + 40
        lines = message(body="line\r\n" * 20_000)
        assert checks(lines) > checks(message()) + 40

    def test_a_budget_spent_in_any_stage_stops_the_reading(self) -> None:
        """Whichever check finds the deadline passed, the result is an unread "unknown"."""
        data = message(body="Hello\r\n" * 3_000)
        total = 0

        def counting() -> float:
            nonlocal total
            total += 1
            return 0.0

        read_message(data, deadline=1.0, clock=counting)
        for allowed in range(1, total):
            reads = iter(range(10**9))

            def clock(allowed: int = allowed, reads: Iterator[int] = reads) -> float:
                return 0.0 if next(reads) < allowed else 2.0

            reading = read_message(data, deadline=1.0, clock=clock)
            assert reading.kind == "unknown", allowed
            assert reading.unread is not None and "budget" in reading.unread

    def test_without_a_deadline_the_clock_is_never_read(self) -> None:
        def clock() -> float:
            raise AssertionError("the clock was read")

        assert read_message(message(), clock=clock).kind == "reply"

    def test_a_deadline_needs_its_clock(self) -> None:
        with pytest.raises(ValueError, match="clock"):
            read_message(message(), deadline=1.0)

    def test_an_unreadable_message_says_so(self) -> None:
        reading = read_message("not bytes")  # type: ignore[arg-type]
        assert reading.unread == "not a message: not bytes"

    def test_a_message_read_is_not_unread(self) -> None:
        for data in (message(), b"", b"\x00" * 100, encoded_subject(10_000)):
            assert read_message(data).unread is None


_FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


def _bounded(reading: Reading) -> None:
    assert reading.kind in KINDS
    assert len(reading.subject) <= mimetext.VALUE_LIMIT
    assert reading.text is None or len(reading.text) <= mimetext.TEXT_LIMIT
    assert all(len(r) <= 254 for r in reading.recipients)
    if reading.unread is not None:
        assert reading.kind == "unknown"


@_FUZZ
@given(hostile_messages())
def test_hostile_messages_are_read_within_bounds_and_budget(data: bytes) -> None:
    """Whatever the shape, the reader never raises, reads within its bounds, and on time.

    Without a budget every generated message is read whole within the ceiling —
    the bounds alone suffice; with the daemon's budget it is read too, never over it.
    """
    reading, seconds = timed(data)
    assert seconds < CEILING
    assert reading.unread is None
    _bounded(reading)
    budgeted = read_message(
        data, now=NOW, deadline=time.monotonic() + READ_BUDGET, clock=time.monotonic
    )
    _bounded(budgeted)
    assert budgeted.kind == reading.kind


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(hostile_messages())
def test_hostile_messages_give_up_at_the_deadline(data: bytes) -> None:
    """A budget too small for the message ends the reading at the next check, cleanly."""
    ticks = iter(range(10**9))
    reading = read_message(data, now=NOW, deadline=3.0, clock=lambda: float(next(ticks)))
    _bounded(reading)
    assert reading.unread in (None, "over the reading budget (3 s)")


class TestExplain:
    """`toma inbox explain` reads a hostile message promptly, and says when it did not read it."""

    def test_the_issues_message_is_explained_promptly(self, tmp_path: Path) -> None:
        path = tmp_path / "hostile.eml"
        path.write_bytes(distinct_headers(200_000))
        start = time.perf_counter()
        result = CliRunner().invoke(
            main,
            ["--config", str(tmp_path / "none.toml"), "inbox", "explain", str(path)],
            catch_exceptions=False,
        )
        assert time.perf_counter() - start < CEILING
        assert result.exit_code == 0, result.output
        assert f"{path}: reply (written by a person)" in result.output
        assert "problem: 199005 header fields past the first 1000 ignored" in result.output

    def test_a_message_over_the_budget_is_explained_as_not_read(self, tmp_path: Path) -> None:
        path = tmp_path / "hostile.eml"
        path.write_bytes(distinct_headers(20_000))
        ticks = iter(range(10**9))
        rows = explain_files(
            [path], config=None, reader=None, now=NOW, clock=lambda: float(next(ticks))
        )
        assert rows[0]["class"] == "unknown"
        # The budget is the daemon's, less the one reading of this clock explain made itself.
        assert rows[0]["unread"] == f"over the reading budget ({READ_BUDGET - 1:g} s)"
