"""Several `toma run` processes on one PostgreSQL database and one SMTP server.

Every message is claimed before it is sent, and its first write checks that no other
daemon sent it (toma.store.claims), so however many daemons tick at once, each
message reaches the server once; a daemon killed mid-tick leaves what it had in
flight to the others, who settle it as after a crash.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from tests.integration.conftest import RecordingHandler
from tests.integration.projects import make_project, recipient
from tests.postgres import PgServer
from toma.config import Smtp
from toma.config.model import MAX_RATE_PER_MINUTE
from toma.core.contacts import make_contact
from toma.core.enrolments import Enrolment
from toma.daemon.claiming import CLAIM_AHEAD
from toma.daemon.outboxwriter import RESULT_BATCH
from toma.daemon.sending import CHUNKS_IN_FLIGHT, in_doubt_at_most
from toma.store import CONTACTS, ENROLMENTS, MESSAGES
from toma.store.postgres import PgStore
from toma.timeutil import iso

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DSN_ENV = "TOMA_TEST_DSN"
MESSAGES_DUE = 2000
CONCURRENCY = 4
RUN_TIMEOUT = 240.0


@pytest.fixture
def dsn(pg_server: PgServer) -> Iterator[str]:
    with pg_server.database() as found:
        yield found


def project(tmp_path: Path, smtp: Smtp, dsn: str) -> Path:
    smtp = replace(smtp, concurrency=CONCURRENCY, rate_per_minute=MAX_RATE_PER_MINUTE)
    config = make_project(tmp_path, smtp=smtp, now=NOW)
    with config.open("a", encoding="utf-8") as file:
        file.write(f'\n[store]\nkind = "postgres"\ndsn_env = "{DSN_ENV}"\n')
    with PgStore(dsn) as store, store.transaction() as tx:
        for number in range(MESSAGES_DUE):
            contact = make_contact(
                recipient(number), first_name=f"P{number}", tags=["friend"], added_at=iso(NOW)
            )
            tx.put(CONTACTS, contact.email, contact.to_doc())
            # Enrolled already, so that every daemon's first tick plans all of them.
            enrolment = Enrolment(
                contact=contact.email, sequence="keep", enrolled_at=NOW, source="tag"
            )
            tx.put(ENROLMENTS, enrolment.key, enrolment.to_doc())
    return config


def start(config: Path, dsn: str) -> subprocess.Popen[bytes]:
    """`toma run --once` in its own process; its log goes to a file (a pipe nobody reads
    while the test waits would fill up and stop it)."""
    command = [sys.executable, "-m", "toma", "--config", str(config), "run", "--once"]
    logs = config.parent / "logs"
    logs.mkdir(exist_ok=True)
    with (logs / f"{time.monotonic_ns()}.log").open("wb") as log:
        return subprocess.Popen(
            [*command, "--now", iso(NOW)],
            env={**os.environ, DSN_ENV: dsn},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def log_of(daemon: subprocess.Popen[bytes]) -> str:
    return f"exit {daemon.returncode} (logs in the project's logs/ folder)"


def finish(daemons: list[subprocess.Popen[bytes]]) -> None:
    for daemon in daemons:
        daemon.wait(timeout=RUN_TIMEOUT)
        assert daemon.returncode in (0, 78), log_of(daemon)


def sent_by_each(config: Path) -> list[int]:
    """How many messages each daemon's log says it sent."""
    logs = sorted((config.parent / "logs").glob("*.log"))
    return [log.read_text(encoding="utf-8").count(" sent contact=") for log in logs]


def built_by_each(config: Path) -> list[int]:
    """How many messages each daemon built: those due, less those it found another daemon
    had sent when it came to build them."""
    logs = sorted((config.parent / "logs").glob("*.log"))
    return [
        MESSAGES_DUE
        - sum(map(int, re.findall(r"sent by other daemons messages=(\d+)", log.read_text())))
        for log in logs
    ]


def claims_held(dsn: str) -> int:
    """The claims held now, by every daemon (advisory locks of the one-number form)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1"
        ).fetchone()
    return int(row[0]) if row else 0


def received(handler: RecordingHandler) -> Counter[str]:
    return Counter(rcpt for message in handler.messages for rcpt in message.rcpt_tos)


def states(dsn: str) -> Counter[str]:
    with PgStore(dsn) as store:
        return Counter(doc["state"] for _key, doc in store.all(MESSAGES))


@pytest.mark.slow
@pytest.mark.parametrize("count", [2, 4])
def test_daemons_on_one_database_send_every_message_exactly_once(
    tmp_path: Path, smtp_config: Smtp, smtpd_handler: RecordingHandler, dsn: str, count: int
):
    """N daemons tick at once over 2,000 due messages: each arrives once, none is left."""
    config = project(tmp_path, smtp_config, dsn)
    daemons = [start(config, dsn) for _ in range(count)]
    # Claims live in the server's shared lock table: each daemon holds a bounded few
    # (a chunk's claims ahead, the sends in flight, outcomes still to write).
    most = 0
    deadline = time.monotonic() + RUN_TIMEOUT
    while any(daemon.poll() is None for daemon in daemons) and time.monotonic() < deadline:
        most = max(most, claims_held(dsn))
        time.sleep(0.01)
    finish(daemons)
    assert 0 < most <= count * (CHUNKS_IN_FLIGHT * (CLAIM_AHEAD + CONCURRENCY) + 2 * RESULT_BATCH)
    assert claims_held(dsn) == 0
    got = received(smtpd_handler)
    assert [who for who, times in got.items() if times > 1] == []
    assert states(dsn) == Counter({"sent": MESSAGES_DUE})
    assert sorted(got) == sorted(recipient(n) for n in range(MESSAGES_DUE))
    shares = sent_by_each(config)
    assert sum(shares) == MESSAGES_DUE
    assert all(share > 0 for share in shares), shares  # the work was shared
    # Each daemon left out what the others had sent by the time it came to build it
    # (2,449 of 4,000 built by two daemons, 3,201 of 8,000 by four, when measured).
    built = built_by_each(config)
    assert sum(built) <= MESSAGES_DUE + (count - 1) * MESSAGES_DUE // 2, (built, shares)


@pytest.mark.slow
@pytest.mark.smtpd_options(data_delay=0.01)
def test_a_daemon_killed_mid_tick_leaves_its_claims_unknown_and_the_rest_goes(
    tmp_path: Path, smtp_config: Smtp, smtpd_handler: RecordingHandler, dsn: str
):
    """SIGKILL one of three daemons while it sends: no duplicates, the others deliver the
    rest, and the next tick reports what it had handed over as unknown."""
    config = project(tmp_path, smtp_config, dsn)
    doomed = start(config, dsn)
    deadline = time.monotonic() + RUN_TIMEOUT
    while len(smtpd_handler.messages) < 100:  # it is sending, several messages in flight
        assert doomed.poll() is None, log_of(doomed)
        assert time.monotonic() < deadline, "the first daemon never started sending"
        time.sleep(0.01)
    others = [start(config, dsn), start(config, dsn)]
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    finish(others)
    # The survivors' next tick finds the dead daemon's claims, and sends what it had
    # not handed over yet.
    finish([start(config, dsn)])
    got = received(smtpd_handler)
    assert [who for who, times in got.items() if times > 1] == []
    final = states(dsn)
    assert set(final) <= {"sent", "unknown"}
    assert 1 <= final["unknown"] <= in_doubt_at_most(CONCURRENCY)
    with PgStore(dsn) as store:
        for key, doc in store.all(MESSAGES):
            if doc["state"] == "sent":
                assert got[doc["contact"]] == 1, key
            else:
                assert got[doc["contact"]] <= 1, key
    assert final["sent"] + final["unknown"] == MESSAGES_DUE
