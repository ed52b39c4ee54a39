"""Who can be due, asked of PostgreSQL's index: never fewer than the planner finds.

A store's life is simulated tick by tick: steps sent, failed and retried,
skipped, enrolments paused, stopped, removed and added, contacts held and
unsubscribed, a sequence file edited. At every tick the plan made from the
contacts the index names must equal the plan made from the whole store, and the
index kept by triggers must equal one rebuilt from the documents.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.postgres import PgServer, progress, rebuilt
from tests.sequences import sequence
from toma.config import Config, parse_config
from toma.core.contacts import make_contact
from toma.core.earliest import NOT_YET, earliest
from toma.core.enrolments import Enrolment
from toma.core.outbox import MessageState, OutboxRecord, advance, carry_on, sequence_key
from toma.core.planner import Plan, PlannedSend, plan
from toma.daemon.cache import plan_state, plan_state_of
from toma.project.sequences import Files
from toma.reports.plan import plan_rows, read_ahead
from toma.store import CONTACTS, ENROLMENTS, MESSAGES, TinyStore
from toma.store.postgres import PgStore
from toma.store.records.due import can_be_due

# The weeks when summer time begins in New York (8 March), then in Europe and at
# Troll, whose clocks move two hours (29 March): where the index allows least slack.
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "Asia/Tokyo",
    "Pacific/Kiritimati",
    "Antarctica/Troll",
    "",
)
TICK = timedelta(hours=13)
TICKS = 70


SEQUENCES = {
    "intro": sequence("intro", [("hello", "0d"), ("check", "3d"), ("last", "2w")]),
    "keep": replace(
        sequence("keep", [("first", "1d")], repeat="10d", window="always"), enroll_tag="friend"
    ),
    "long": sequence("long", [("a", "2d"), ("b", "1mo"), ("c", "1d")]),
}
# The file edited mid-way: "check" removed, "b" and "c" swapped, a step added last.
EDITED = {
    **SEQUENCES,
    "intro": sequence("intro", [("hello", "0d"), ("last", "2w"), ("more", "5d")]),
    "long": sequence("long", [("a", "2d"), ("c", "1d"), ("b", "1mo")]),
}


@pytest.fixture
def config() -> Config:
    return parse_config(
        {
            "owner": {"name": "Alex", "email": "alex@example.com", "timezone": "Europe/Berlin"},
            "windows": {
                "default": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00",
                            "end": "17:00"},
                "always": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                           "start": "00:00", "end": "23:59"},
            },
            "pace": {"min_gap": "1d", "max_late": "4d"},
        },
        file=Path("config.toml"),
    )  # fmt: skip


@pytest.fixture
def pg(pg_server: PgServer) -> Iterator[PgStore]:
    with pg_server.database() as dsn, PgStore(dsn, pool_size=2) as store:
        yield store


def compare(
    store: PgStore, config: Config, files: Files, now: datetime
) -> tuple[Plan, int, int, int]:
    everyone = plan_state(store, config, files)
    whole = plan(everyone, now)
    found = earliest(files.sequences, config.windows, files.held, horizon=now, pace=config.pace)
    asked = can_be_due(store, found, now)
    unpaced = can_be_due(
        store, earliest(files.sequences, config.windows, files.held, horizon=now), now
    )
    assert asked is not None and unpaced is not None and asked <= unpaced
    scoped = plan(plan_state_of(store, config, files, asked), now)
    assert scoped.due == whole.due
    assert scoped.skipped == whole.skipped
    assert scoped.problems == whole.problems
    # `toma plan`: the days ahead, read from the contacts that can have something due
    # by their end (and those a tag rule would enrol), are those read from everyone.
    until = now + timedelta(days=2)
    ahead, enrolling = read_ahead(store, config, files, until)
    rows = plan_rows(store, config, ahead, files, now=now, until=until, enrolling=enrolling)
    assert rows == plan_rows(store, config, everyone, files, now=now, until=until)
    return whole, len(asked), len(ahead.contacts), len(unpaced - asked)


def fill(store: PgStore, rng: random.Random, people: int) -> list[str]:
    emails = [f"p{n}@example.com" for n in range(people)]
    with store.transaction() as tx:
        for email in emails:
            # Some carry the tag of "keep": those never enrolled in it, `toma plan` enrols.
            contact = make_contact(email, first_name="P", tags=rng.choice([[], [], ["friend"]]))
            zone = rng.choice(ZONES)
            tx.put(CONTACTS, email, {**contact.to_doc(), "timezone": zone})
            for name in SEQUENCES:
                if rng.random() < 0.8:
                    at = START - timedelta(days=rng.randint(0, 60), hours=rng.randint(0, 23))
                    enrolment = Enrolment(email, name, at, source="hand")
                    tx.put(ENROLMENTS, enrolment.key, enrolment.to_doc())
    return emails


def act(
    store: PgStore, rng: random.Random, decided: Plan, now: datetime, emails: list[str]
) -> None:
    """Send what is due (some fail, some wait for a retry), record the skips, and stir."""
    with store.transaction() as tx:
        for send in decided.skipped:
            old = OutboxRecord.from_doc(doc) if (doc := tx.get(MESSAGES, send.key)) else None
            record = carry_on(old, send, MessageState.SKIPPED, at=now, detail="late")
            tx.put(MESSAGES, record.key, record.to_doc())
        for send in decided.due:
            old = OutboxRecord.from_doc(doc) if (doc := tx.get(MESSAGES, send.key)) else None
            sending = carry_on(old, send, MessageState.SENDING, at=now)
            tx.put(MESSAGES, sending.key, sending.to_doc())
            roll = rng.random()
            if roll < 0.1:
                done = advance(
                    sending,
                    MessageState.PLANNED,
                    at=now,
                    next_attempt_at=now + timedelta(hours=rng.randint(1, 40)),
                )
            elif roll < 0.15:
                done = advance(sending, MessageState.FAILED, at=now, detail="refused")
            elif roll < 0.18:
                done = advance(sending, MessageState.UNKNOWN, at=now)
            else:
                done = advance(sending, MessageState.SENT, at=now, sent_at=now,
                               message_id=f"<{sending.key}@example.com>")  # fmt: skip
            tx.put(MESSAGES, done.key, done.to_doc())
    email = rng.choice(emails)
    name = rng.choice(list(SEQUENCES))
    with store.transaction() as tx:
        key = f"{name}/{email}"
        roll = rng.random()
        doc = tx.get(ENROLMENTS, key)
        if doc is None:
            tx.put(ENROLMENTS, key, Enrolment(email, name, now, source="tag").to_doc())
        elif roll < 0.25:
            tx.put(ENROLMENTS, key, {**doc, "state": "stopped"})
        elif roll < 0.5:
            until = now + timedelta(days=rng.randint(1, 9))
            tx.put(ENROLMENTS, key, {**doc, "state": "paused", "paused_until": until.isoformat()})
        elif roll < 0.6:
            tx.delete(ENROLMENTS, key)
        elif roll < 0.7:
            contact = tx.get(CONTACTS, email) or {}
            held = (now + timedelta(days=rng.randint(1, 6))).isoformat()
            tx.put(CONTACTS, email, {**contact, "hold_until": held})
        elif roll < 0.75:
            contact = tx.get(CONTACTS, email) or {}
            tx.put(CONTACTS, email, {**contact, "status": "unsubscribed"})
        elif roll < 0.85:
            sent = [k for k, _d in store.where(MESSAGES, contact=email) if k.startswith(name)]
            if sent:
                tx.delete(MESSAGES, rng.choice(sent))  # a record removed by hand


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_index_names_everyone_the_planner_plans(pg: PgStore, config: Config, seed: int) -> None:
    rng = random.Random(seed)
    emails = fill(pg, rng, 40)
    files = Files(dict(SEQUENCES))
    sent = asked_least = ahead_least = paced = 0
    for n in range(TICKS):
        now = START + n * TICK + timedelta(minutes=rng.randint(0, 59))
        if n == TICKS // 2:
            files = Files(dict(EDITED))
        decided, asked, read_ahead, held_back = compare(pg, config, files, now)
        paced += held_back
        act(pg, rng, decided, now, emails)
        sent += len(decided.due)
        asked_least = min(asked_least or asked, asked)
        ahead_least = min(ahead_least or read_ahead, read_ahead)
        if n % 10 == 0:
            assert progress(pg) == rebuilt(pg)
    assert progress(pg) == rebuilt(pg)
    # Not a vacuous equality: mail went, and the index left most contacts unread,
    # some of them for the pace alone.
    assert sent > 60
    assert paced > 0
    assert asked_least < len(emails) // 2
    assert ahead_least < len(emails)


def test_a_held_sequence_and_a_finished_enrolment_are_never_asked_for(
    pg: PgStore, config: Config
) -> None:
    with pg.transaction() as tx:
        for email, name in (("done@example.com", "intro"), ("held@example.com", "long")):
            tx.put(CONTACTS, email, make_contact(email).to_doc())
            enrolment = Enrolment(email, name, START - timedelta(days=400), source="hand")
            tx.put(ENROLMENTS, enrolment.key, enrolment.to_doc())
        for step in ("hello", "check", "last"):
            at = START - timedelta(days=300)
            record = carry_on(
                None, _send("done@example.com", "intro", step), MessageState.SENDING, at=at
            )
            record = advance(
                record,
                MessageState.SENT,
                at=at,
                sent_at=at,
                message_id=f"<{step}@example.com>",
            )
            tx.put(MESSAGES, record.key, record.to_doc())
    files = Files(dict(SEQUENCES), held=frozenset({"long"}))
    asked = earliest(files.sequences, config.windows, files.held, horizon=START)
    assert asked.delay("intro", "last") is None  # finished
    assert asked.delay("long", NOT_YET) is None  # held
    assert asked.delay("keep", "first") == asked.delays["keep"]["first"]  # the repeat's
    assert can_be_due(pg, asked, START + timedelta(days=3000)) == set()
    # Released, the held sequence's enrolment is asked for again.
    asked = earliest(files.sequences, config.windows, horizon=START)
    assert can_be_due(pg, asked, START) == {"held@example.com"}


def test_clocks_moving_two_hours_ahead_are_allowed_for_and_no_more(
    pg: PgStore, config: Config
) -> None:
    """At Troll the clocks go from UTC+0 to UTC+2 on 29 March 2026. A step three days
    after noon on the 28th is due at noon on the 31st there: 10:00 UTC, two hours before
    three days have passed. The index asks with those two hours of slack, the largest
    rise of any zone around then, and not the day a date-line jump would need."""
    email = "troll@example.com"
    troll = sequence("troll", [("first", "0d"), ("second", "3d")], window="always")
    sent_at = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    with pg.transaction() as tx:
        tx.put(CONTACTS, email, {**make_contact(email).to_doc(), "timezone": "Antarctica/Troll"})
        enrolment = Enrolment(email, "troll", sent_at, source="hand")
        tx.put(ENROLMENTS, enrolment.key, enrolment.to_doc())
        record = carry_on(None, _send(email, "troll", "first"), MessageState.SENDING, at=sent_at)
        record = advance(
            record, MessageState.SENT, at=sent_at, sent_at=sent_at, message_id="<first@x.org>"
        )
        tx.put(MESSAGES, record.key, record.to_doc())
    files = Files({"troll": troll})
    due = datetime(2026, 3, 31, 10, 0, tzinfo=UTC)
    assert [send.step for send in plan(plan_state(pg, config, files), due).due] == ["second"]
    assert plan(plan_state(pg, config, files), due - timedelta(minutes=1)).due == ()
    asked = earliest(files.sequences, config.windows, horizon=due)
    assert asked.delay("troll", "first") == timedelta(days=3, hours=-2)
    assert can_be_due(pg, asked, due) == {email}
    # A year later no zone moves its clocks by more than an hour at the end of March.
    later = earliest(files.sequences, config.windows, horizon=due + timedelta(days=365))
    assert later.delay("troll", "first") >= timedelta(days=3, hours=-2)


def test_a_contact_the_pace_holds_back_is_read_once_the_gap_has_passed(
    pg: PgStore, config: Config
) -> None:
    """Handed one step, a contact whose other sequences have steps due waits out the
    pace's gap (a day here): meanwhile the index leaves them out, and the planner,
    reading everyone, sends them nothing either. Once the gap has passed, or once
    the step turns out to have failed, they are asked for again."""
    email = "busy@example.com"
    # Tuesday 3 March, 10:00 in Berlin: the first steps of "intro" and "keep" are due.
    now = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    with pg.transaction() as tx:
        tx.put(CONTACTS, email, {**make_contact(email).to_doc(), "timezone": "Europe/Berlin"})
        for name in ("intro", "long", "keep"):
            enrolment = Enrolment(email, name, now - timedelta(hours=25), source="hand")
            tx.put(ENROLMENTS, enrolment.key, enrolment.to_doc())
    files = Files(dict(SEQUENCES))

    def asked(now: datetime) -> set[str] | None:
        found = earliest(files.sequences, config.windows, horizon=now, pace=config.pace)
        return can_be_due(pg, found, now)

    def due(now: datetime) -> tuple[PlannedSend, ...]:
        return plan(plan_state(pg, config, files), now).due

    assert asked(now) == {email}
    (first,) = due(now)
    sending = carry_on(None, first, MessageState.SENDING, at=now)
    with pg.transaction() as tx:
        tx.put(MESSAGES, sending.key, sending.to_doc())
    # The other is still due, but cannot go before the gate opens a day later.
    for hours in (1, 12, 23):
        assert due(now + timedelta(hours=hours)) == ()
    # Read again only from an hour before (the slack for clocks that move).
    assert asked(now + timedelta(hours=1)) == asked(now + timedelta(hours=22)) == set()
    assert asked(now + timedelta(hours=23)) == {email}
    without_pace = earliest(files.sequences, config.windows, horizon=now)
    assert can_be_due(pg, without_pace, now + timedelta(hours=1)) == {email}
    assert len(due(now + timedelta(days=1))) == 1
    assert asked(now + timedelta(days=1)) == {email}
    # The message turns out to have failed: it took no turn, the next one can go now.
    failed = advance(sending, MessageState.FAILED, at=now + timedelta(hours=2), detail="refused")
    with pg.transaction() as tx:
        tx.put(MESSAGES, failed.key, failed.to_doc())
    assert asked(now + timedelta(hours=3)) == {email}
    assert len(due(now + timedelta(hours=3))) == 1
    assert progress(pg) == rebuilt(pg)


def test_the_embedded_store_cannot_say(tmp_path: Path, config: Config) -> None:
    with TinyStore(tmp_path / "data") as store:
        assert can_be_due(store, earliest(SEQUENCES, config.windows, horizon=START), START) is None


def _send(email: str, name: str, step: str) -> PlannedSend:
    return PlannedSend(
        key=sequence_key(email, name, step),
        contact=email,
        kind="sequence",
        sequence=name,
        step=step,
        template=f"{step}.md",
        due_at=START,
        send_at=START,
        late_by=timedelta(0),
    )


def test_migration_rebuilds_what_a_database_held_before(pg: PgStore) -> None:
    """A database of version 1 gets its index from the documents it already holds."""
    record = carry_on(
        None, _send("x@example.com", "keep", "repeat-4"), MessageState.SENDING, at=START
    )
    with pg.transaction() as tx:
        tx.put(MESSAGES, record.key, record.to_doc())
    assert [(r[0], r[1], r[6]) for r in rebuilt(pg)] == [("x@example.com", "keep", NOT_YET)]


def test_version_4_learns_the_pace_from_the_messages_already_written(
    pg_server: PgServer,
) -> None:
    """A database of version 3 upgraded: each enrolment's latest paced moment is what
    a rebuild finds, among sent, handed, failed and retried messages and notices."""
    from toma.store.postgres import schema

    email = "old@example.com"
    earlier = [(v, text) for v, _name, text in schema.migrations() if v <= 3]
    with pg_server.database() as dsn:
        with psycopg.connect(dsn) as conn:
            for _version, text in earlier:
                conn.execute(text.encode())
            conn.execute(
                "CREATE TABLE toma_schema (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for version, _text in earlier:
                conn.execute("INSERT INTO toma_schema VALUES (%s, 'old')", (version,))
            docs = [(CONTACTS, email, make_contact(email).to_doc())]
            for name in SEQUENCES:
                enrolment = Enrolment(email, name, START - timedelta(days=9), source="hand")
                docs.append((ENROLMENTS, enrolment.key, enrolment.to_doc()))
            for name, step, state, hours in (
                ("intro", "hello", MessageState.SENT, 50),
                ("intro", "check", MessageState.FAILED, 2),
                ("long", "a", MessageState.SENDING, 30),
                ("long", "b", MessageState.PLANNED, 1),
                ("keep", "first", MessageState.SKIPPED, 5),
            ):
                at = START - timedelta(hours=hours)
                send = replace(_send(email, name, step), due_at=at)
                record = carry_on(None, send, MessageState.SENDING, at=at)
                retry = at + timedelta(days=1) if state is MessageState.PLANNED else None
                if state is not MessageState.SENDING:
                    record = advance(record, state, at=at, next_attempt_at=retry)
                docs.append((MESSAGES, record.key, record.to_doc()))
            about = replace(_send(email, "keep", "x"), kind="notice")
            notice = carry_on(None, about, MessageState.SENDING, at=START)
            docs.append((MESSAGES, "notice/x", notice.to_doc()))
            for table, key, doc in docs:
                conn.execute(
                    "INSERT INTO toma_documents (tbl, key, doc, ord)"
                    " VALUES (%s, %s, %s, nextval('toma_order'))",
                    (table, key, json.dumps(doc)),
                )
        with PgStore(dsn) as store:
            paced = {row[1]: row[-1] for row in progress(store)}
            assert paced == {
                "intro": START - timedelta(hours=50),
                "long": START - timedelta(hours=30),
                "keep": None,
            }
            assert progress(store) == rebuilt(store)


def test_each_write_of_the_journal_leaves_the_index_as_a_rebuild_does(pg: PgStore) -> None:
    """Each write a send makes, one statement at a time, leaves the index as a rebuild
    makes it (the trigger's common case: the anchor moved forward, or left), and so do
    the writes it reads the messages again for: an older attempt, a failure, a retry,
    two rows of one enrolment in one statement, a message moved to another contact,
    one deleted, one whose key or table an UPDATE by hand changed."""
    email, other = "one@example.com", "two@example.com"
    with pg.transaction() as tx:
        for who in (email, other):
            tx.put(CONTACTS, who, make_contact(who).to_doc())
            for name in ("intro", "long", "keep"):
                enrolment = Enrolment(who, name, START - timedelta(days=9), source="hand")
                tx.put(ENROLMENTS, enrolment.key, enrolment.to_doc())

    def put(*records: OutboxRecord) -> None:
        with pg.transaction() as tx:
            for record in records:
                tx.put(MESSAGES, record.key, record.to_doc())
        assert progress(pg) == rebuilt(pg)

    later = START + timedelta(hours=3)
    hello = carry_on(None, _send(email, "intro", "hello"), MessageState.SENDING, at=START)
    put(hello)  # handed: the enrolment's first attempt
    put(advance(hello, MessageState.SENT, at=START, sent_at=START))  # at the same moment
    put(advance(hello, MessageState.SENT, at=later, sent_at=later))  # later: moves on
    earlier = START - timedelta(days=1)
    put(carry_on(None, _send(email, "intro", "check"), MessageState.SKIPPED, at=earlier))
    a = carry_on(None, _send(email, "long", "a"), MessageState.SENDING, at=START)
    put(a)
    put(advance(a, MessageState.FAILED, at=later, detail="refused"))  # no longer paces
    retry = advance(a, MessageState.PLANNED, at=later, next_attempt_at=later)
    put(retry)
    put(carry_on(retry, _send(email, "long", "a"), MessageState.SENDING, at=later))
    first = carry_on(None, _send(email, "keep", "first"), MessageState.SENDING, at=START)
    again = carry_on(None, _send(email, "keep", "repeat-1"), MessageState.SENDING, at=later)
    put(first, again)  # two rows of one enrolment in one statement
    put(replace(advance(first, MessageState.SENT, at=later, sent_at=later), contact=other))
    with pg.transaction() as tx:
        tx.delete(MESSAGES, again.key)
    assert progress(pg) == rebuilt(pg)
    with pg._conn() as conn:
        conn.execute(
            "UPDATE toma_documents SET key = key || '-moved' WHERE tbl = 'messages' AND key = %s",
            (hello.key,),
        )
        conn.execute(
            "UPDATE toma_documents SET tbl = 'conversations' WHERE tbl = 'messages' AND key = %s",
            (a.key,),
        )
    assert progress(pg) == rebuilt(pg)


def test_tag_rules_carry_on_from_where_the_last_daemon_applied_them(pg: PgStore) -> None:
    """The first daemon looks at everyone; the next, at the contacts changed since."""
    from toma.daemon.scoped import TAG_RULES_KEY, enrol_by_tag
    from toma.store import SYNC

    friends = {"intro": replace(SEQUENCES["intro"], enroll_tag="friend")}
    with pg.transaction() as tx:
        for n in range(5):
            email = f"f{n}@example.com"
            tx.put(CONTACTS, email, make_contact(email, tags=["friend"]).to_doc())
    assert enrol_by_tag(pg, friends, START) == 5
    mark = pg.get(SYNC, TAG_RULES_KEY)
    assert mark is not None and mark["rules"] == [["friend", "intro"]]
    # An enrolment removed by hand behind the rules' back is not looked at again
    # (the mark is past it) until its contact changes.
    with pg.transaction() as tx:
        tx.delete(ENROLMENTS, "intro/f0@example.com")
        tx.put(
            CONTACTS, "late@example.com", make_contact("late@example.com", tags=["friend"]).to_doc()
        )
    with pg.transaction() as tx:
        tx.put(SYNC, TAG_RULES_KEY, {**mark, "position": pg.changes_since(None)[0].position})
    assert enrol_by_tag(pg, friends, START) == 0
    with pg.transaction() as tx:
        doc = tx.get(CONTACTS, "late@example.com")
        assert doc is not None
        tx.put(CONTACTS, "late@example.com", {**doc, "first_name": "Late"})
    assert enrol_by_tag(pg, friends, START) == 1  # a new daemon, from the stored mark
    assert pg.get(ENROLMENTS, "intro/late@example.com") is not None
    # New rules: everyone is looked at again.
    friends["keep"] = replace(SEQUENCES["keep"], enroll_tag="friend")
    assert enrol_by_tag(pg, friends, START) == 6 + 1  # keep for all, intro for f0


@pytest.mark.parametrize(
    "forged",
    [
        {"rules": [["friend", "intro"]], "source": "not a list", "position": 3},
        {"rules": [["friend", "intro"]], "source": ["postgres", "x"], "position": "3"},
        {"rules": "friend"},
        {},
        {"rules": [["friend", "intro"]], "source": None, "position": 10**12},  # source below
    ],
)
def test_a_damaged_tag_rules_mark_means_looking_at_everyone(
    pg: PgStore, forged: dict[str, object]
) -> None:
    """A mark nobody can read (a hand edit, another version) costs a full check, not a
    contact left unenrolled nor a failed tick."""
    from toma.daemon.scoped import TAG_RULES_KEY, enrol_by_tag
    from toma.store import SYNC

    friends = {"intro": replace(SEQUENCES["intro"], enroll_tag="friend")}
    with pg.transaction() as tx:
        tx.put(CONTACTS, "f@example.com", make_contact("f@example.com", tags=["friend"]).to_doc())
        if forged.get("position") == 10**12:
            # A mark from this very feed, but past its newest change.
            forged = {**forged, "source": list(pg.changes_since(None)[0].source)}
        tx.put(SYNC, TAG_RULES_KEY, forged)
    assert enrol_by_tag(pg, friends, START) == 1
    mark = pg.get(SYNC, TAG_RULES_KEY)
    assert mark is not None and isinstance(mark["position"], int)
