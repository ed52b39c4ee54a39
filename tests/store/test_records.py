"""The records layer's questions answered alike by both backends (indexed on PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from toma.core.contacts import make_contact
from toma.core.invoices import make_invoice
from toma.core.outbox import MessageState, advance, new_record
from toma.store import CONTACTS, CONVERSATIONS, ENROLMENTS, MESSAGES, SYNC, Store
from toma.store.records import contacts as addressbook
from toma.store.records import enrolments, invoices, newsletters
from toma.store.records.query import keyed_from, matching

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def message(key: str, contact: str, kind: str, ref: str, state: MessageState) -> dict[str, object]:
    record = new_record(
        key=key, contact=contact, kind=kind, ref=ref, template="t.md", due_at=NOW, at=NOW,  # type: ignore[arg-type]
        state=MessageState.SENDING if state is not MessageState.PLANNED else MessageState.PLANNED,
    )  # fmt: skip
    if state is not MessageState.PLANNED and state is not MessageState.SENDING:
        record = advance(record, state, at=NOW)
    return record.to_doc()


def people(store: Store, *emails: str) -> None:
    for email in emails:
        addressbook.add(store, make_contact(email, first_name="X", tags=["t"]), now=NOW)
        enrolments.enrol(store, email, "keep", now=NOW)


def test_forget_erases_one_persons_records_and_nobody_elses(store: Store):
    people(store, "ada@example.org", "bo@example.org")
    with store.transaction() as tx:
        for who in ("ada", "bo"):
            email = f"{who}@example.org"
            tx.put(
                MESSAGES,
                f"m-{who}",
                message(f"m-{who}", email, "sequence", "keep/a", MessageState.SENT),
            )
            tx.put(
                CONVERSATIONS,
                f"c-{who}",
                {"contact": email, "kind": "reply", "answers": f"m-{who}"},
            )
    assert addressbook.forget(store, "ada@example.org", now=NOW) == 4
    assert [k for k, _ in store.all(CONTACTS)] == ["bo@example.org"]
    assert [d["contact"] for _k, d in store.all(ENROLMENTS)] == ["bo@example.org"]
    assert [k for k, _ in store.all(MESSAGES)] == ["m-bo"]
    assert [k for k, _ in store.all(CONVERSATIONS)] == ["c-bo"]


def test_settling_an_invoice_skips_its_planned_reminders_only(store: Store):
    people(store, "ada@example.org")
    for number in ("A-1", "A-2"):
        invoices.add(
            store,
            make_invoice(
                number,
                "ada@example.org",
                "100",
                "EUR",
                issued=date(2026, 2, 1),
                due=date(2026, 3, 1),
            ),
        )
    with store.transaction() as tx:
        for key, state in (
            ("invoice:A-1:+3d", MessageState.PLANNED),
            ("invoice:A-1:-3d", MessageState.SENT),
            ("invoice:A-2:+3d", MessageState.PLANNED),
        ):
            tx.put(MESSAGES, key, message(key, "ada@example.org", "invoice", key, state))
    invoices.settle(store, "A-1", paid_on=date(2026, 3, 2), now=NOW)
    states = {key: doc["state"] for key, doc in store.all(MESSAGES)}
    assert states == {
        "invoice:A-1:+3d": "skipped",
        "invoice:A-1:-3d": "sent",
        "invoice:A-2:+3d": "planned",
    }


def test_a_newsletters_figures_count_its_own_messages_and_answers(store: Store):
    people(store, "ada@example.org", "bo@example.org", "cy@example.org")
    with store.transaction() as tx:
        for key, who, ref, state in (
            ("n1-ada", "ada", "issue-1", MessageState.SENT),
            ("n1-bo", "bo", "issue-1", MessageState.FAILED),
            ("n1-cy", "cy", "issue-1", MessageState.UNKNOWN),
            ("n2-ada", "ada", "issue-2", MessageState.SENT),
        ):
            tx.put(MESSAGES, key, message(key, f"{who}@example.org", "newsletter", ref, state))
        tx.put(
            CONVERSATIONS,
            "r1",
            {"contact": "ada@example.org", "kind": "reply", "answers": "n1-ada"},
        )
        tx.put(
            CONVERSATIONS,
            "r2",
            {"contact": "ada@example.org", "kind": "reply", "answers": "n2-ada"},
        )
        tx.put(
            CONVERSATIONS, "b1", {"contact": "bo@example.org", "kind": "bounce", "answers": "n1-bo"}
        )
    found = newsletters.figures(store, "issue-1")
    assert (found["sent"], found["failed"], found["unknown"]) == (1, 1, 1)
    assert (found["replies"], found["bounced"], found["in_progress"]) == (1, 1, 0)


def test_status_counts_the_outbox_as_reading_every_message_would(store: Store):
    """`toma status` counts by state and issue in the database (PostgreSQL): the same
    figures, and the same messages listed, as a tally of every message read."""
    from toma.reports.status import OutboxTally, gather
    from toma.store.records.query import counted_by

    states = [MessageState.SENT] * 5 + [
        MessageState.FAILED,
        MessageState.UNKNOWN,
        MessageState.SKIPPED,
        MessageState.PLANNED,
        MessageState.SENDING,
    ]
    with store.transaction() as tx:
        for n, state in enumerate(states):
            kind, ref = ("newsletter", f"issue-{n % 2}") if n % 3 == 0 else ("sequence", "s/a")
            tx.put(MESSAGES, f"m{n}", message(f"m{n}", f"p{n}@example.org", kind, ref, state))
        retry = message("r", "r@example.org", "sequence", "s/b", MessageState.PLANNED)
        tx.put(MESSAGES, "r", {**retry, "next_attempt_at": NOW.isoformat()})
    read = OutboxTally()
    for key, doc in store.all(MESSAGES):
        read.add(key, doc)
    report = gather(store)
    expected = read.fields()
    assert report.states == expected["states"]
    assert report.newsletters == expected["newsletters"] == ["issue-0", "issue-1"]
    for which in ("failed", "unknown", "retrying"):
        assert [r.key for r in getattr(report, which)] == [r.key for r in expected[which]]
        assert getattr(report, which)  # one of each
    assert counted_by(store, MESSAGES, "state", kind="newsletter") == {
        "sent": 2,
        "unknown": 1,
        "sending": 1,
    }


def test_contacts_carrying_one_of_some_tags(store: Store):
    """What a scheduled issue reads of the address book: asked of PostgreSQL by tag."""
    with store.transaction() as tx:
        for n, tags in enumerate([["a"], ["b", "c"], [], ["c"], ["A"], ["a", "b"]]):
            email = f"p{n}@example.org"
            tx.put(CONTACTS, email, make_contact(email, tags=tags).to_doc())
        tx.put(CONTACTS, "odd@example.org", {"email": "odd@example.org", "tags": {"a": 1}})
        tx.put(CONTACTS, "odder@example.org", {"email": "odder@example.org", "tags": [{"a": 1}]})
    found = [c.email for c in addressbook.tagged_any(store, {"a", "b"})]
    # Tags are kept in lower case; tags that are not a list are none.
    assert found == ["p0@example.org", "p1@example.org", "p4@example.org", "p5@example.org"]
    assert [c.email for c in addressbook.tagged_any(store, {"c"})] == [
        "p1@example.org",
        "p3@example.org",
    ]
    assert len(list(addressbook.tagged_any(store, None))) == 8


def test_documents_by_the_start_of_their_key(store: Store):
    """What a tick asks of the sync table: the issues scheduled, not every contact written
    to by hand. The prefix is text, never a pattern."""
    prefix = newsletters.PREFIX
    with store.transaction() as tx:
        for key in (f"{prefix}b", "contacted:x@example.org", f"{prefix}a", prefix[:-1], "a%_\\b"):
            tx.put(SYNC, key, {"name": key.removeprefix(prefix)})
        tx.put(SYNC, "a%_\\", {"name": "the prefix itself"})
        tx.put(SYNC, "aX_\\b", {"name": "matched by a LIKE pattern"})
    assert [key for key, _doc in keyed_from(store, SYNC, prefix)] == [f"{prefix}b", f"{prefix}a"]
    assert newsletters.scheduled(store) == ["a", "b"]
    assert [key for key, _doc in keyed_from(store, SYNC, "a%_\\")] == ["a%_\\b", "a%_\\"]
    assert list(keyed_from(store, SYNC, "zzz")) == []


def test_a_value_holding_percent_signs_is_text(store: Store):
    """An address may hold a % (RFC 5322 allows it in the local part): asked by it, the
    database compares it as text, never as a placeholder of the query."""
    email = "a%s%b%%@example.org"
    with store.transaction() as tx:
        tx.put(MESSAGES, "m1", message("m1", email, "sequence", "keep/s0", MessageState.SENT))
        tx.put(
            MESSAGES, "m2", message("m2", "b@example.org", "sequence", "keep/s0", MessageState.SENT)
        )
    assert [key for key, _doc in matching(store, MESSAGES, contact=email)] == ["m1"]
    assert [key for key, _doc in matching(store, MESSAGES, kind="sequence")] == ["m1", "m2"]
