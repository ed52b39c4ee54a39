"""The daemon's plan cache: decode only what changed, and always equal a fresh read."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from toma.config import Config, parse_config
from toma.core.contacts import make_contact
from toma.core.enrolments import Enrolment
from toma.core.outbox import MessageState, new_record, sequence_key
from toma.core.planner import PlanState
from toma.daemon.cache import PlanCache, plan_state
from toma.errors import TomaError
from toma.project.sequences import Files
from toma.store import CONTACTS, ENROLMENTS, MESSAGES, SYNC, TinyStore

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FILES = Files({})
PEOPLE = [f"p{n}@example.com" for n in range(6)]
SEQUENCES = ["one", "two"]


@pytest.fixture
def config() -> Config:
    owner = {"name": "Alex", "email": "alex@example.com", "timezone": "Europe/Berlin"}
    return parse_config({"owner": owner}, file=Path("config.toml"))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TinyStore]:
    with TinyStore(tmp_path / "data") as opened:
        yield opened


def contact_doc(email: str, version: int = 0, *, hold: bool = False) -> dict[str, Any]:
    doc = make_contact(email, first_name=f"V{version}", tags=["a"]).to_doc()
    if hold:
        doc["hold_until"] = (NOW + timedelta(days=version)).isoformat()
    return doc


def enrolment_doc(email: str, sequence: str, version: int = 0) -> tuple[str, dict[str, Any]]:
    enrolment = Enrolment(email, sequence, NOW - timedelta(days=version), source="tag")
    return enrolment.key, enrolment.to_doc()


def message_doc(email: str, sequence: str, version: int = 0) -> tuple[str, dict[str, Any]]:
    at = NOW - timedelta(hours=version)
    key = sequence_key(email, sequence, "s0")
    states = (MessageState.PLANNED, MessageState.SENDING, MessageState.SKIPPED)
    record = new_record(
        key=key,
        contact=email,
        kind="sequence",
        ref=f"{sequence}/s0",
        template="t.md",
        due_at=at,
        at=at,
        sequence=sequence,
        step="s0",
        state=states[version % 3],
    )
    return key, record.to_doc()


def assert_same(cached: PlanState, fresh: PlanState) -> None:
    """Equal, and in the same order: contacts and history as dicts, enrolments as a tuple."""
    assert cached == fresh
    assert list(cached.contacts) == list(fresh.contacts)
    assert list(cached.history) == list(fresh.history)


class TestPlanCache:
    """PlanCache.state equals plan_state, decoding only what the change feed names."""

    def test_first_state_reads_everything(self, store: TinyStore, config: Config):
        """Without a mark the cache loads every contact, enrolment and record."""
        with store.transaction() as tx:
            for email in PEOPLE[:3]:
                tx.put(CONTACTS, email, contact_doc(email, hold=email == PEOPLE[0]))
                tx.put(ENROLMENTS, *enrolment_doc(email, "one"))
                tx.put(MESSAGES, *message_doc(email, "one"))
        state = PlanCache().state(store, config, FILES)
        assert_same(state, plan_state(store, config, FILES))
        assert set(state.contact_hold_until) == {PEOPLE[0]}
        assert len(state.enrolments) == len(state.history) == 3

    def test_unchanged_documents_are_not_decoded_again(self, store: TinyStore, config: Config):
        """After a write, only the keys written are new objects; the rest are reused."""
        with store.transaction() as tx:
            for email in PEOPLE:
                tx.put(CONTACTS, email, contact_doc(email))
                tx.put(MESSAGES, *message_doc(email, "one"))
        cache = PlanCache()
        before = cache.state(store, config, FILES)
        with store.transaction() as tx:
            tx.put(CONTACTS, PEOPLE[0], contact_doc(PEOPLE[0], 1))
        after = cache.state(store, config, FILES)
        assert after.contacts[PEOPLE[0]].first_name == "V1"
        assert all(after.contacts[e] is before.contacts[e] for e in PEOPLE[1:])
        assert all(after.history[key] is record for key, record in before.history.items())

    def test_a_state_handed_out_never_changes(self, store: TinyStore, config: Config):
        """Later writes reach later states only: the cache copies a dict before changing it."""
        with store.transaction() as tx:
            tx.put(CONTACTS, PEOPLE[0], contact_doc(PEOPLE[0], hold=True))
            tx.put(ENROLMENTS, *enrolment_doc(PEOPLE[0], "one"))
        cache = PlanCache()
        first = cache.state(store, config, FILES)
        expected = plan_state(store, config, FILES)
        with store.transaction() as tx:
            tx.delete(CONTACTS, PEOPLE[0])
            tx.put(CONTACTS, PEOPLE[1], contact_doc(PEOPLE[1], hold=True))
            tx.put(ENROLMENTS, *enrolment_doc(PEOPLE[1], "one"))
            tx.put(MESSAGES, *message_doc(PEOPLE[1], "one"))
        second = cache.state(store, config, FILES)
        assert_same(first, expected)
        assert_same(second, plan_state(store, config, FILES))

    def test_delete_and_put_again_moves_the_key_last_as_the_store_does(
        self, store: TinyStore, config: Config
    ):
        """Replaying the feed in order keeps the store's order of all(), even for enrolments."""
        with store.transaction() as tx:
            for email in PEOPLE[:3]:
                tx.put(ENROLMENTS, *enrolment_doc(email, "one"))
        cache = PlanCache()
        cache.state(store, config, FILES)
        with store.transaction() as tx:
            tx.delete(ENROLMENTS, enrolment_doc(PEOPLE[0], "one")[0])
        with store.transaction() as tx:
            tx.put(ENROLMENTS, *enrolment_doc(PEOPLE[3], "one"))
            tx.put(ENROLMENTS, *enrolment_doc(PEOPLE[0], "one", 2))
            tx.put(ENROLMENTS, *enrolment_doc(PEOPLE[1], "one", 2))
        state = cache.state(store, config, FILES)
        assert [e.contact for e in state.enrolments] == [PEOPLE[1], PEOPLE[2], PEOPLE[3], PEOPLE[0]]
        assert_same(state, plan_state(store, config, FILES))

    def test_writes_of_another_instance_arrive_with_refresh(self, tmp_path: Path, config: Config):
        """Commits of another store instance are in the feed once this one has caught up."""
        with TinyStore(tmp_path / "data") as mine, TinyStore(tmp_path / "data") as other:
            cache = PlanCache()
            cache.state(mine, config, FILES)
            with other.transaction() as tx:
                tx.put(CONTACTS, PEOPLE[0], contact_doc(PEOPLE[0]))
            assert len(cache.state(mine, config, FILES).contacts) == 0  # not refreshed yet
            mine.refresh()
            assert_same(cache.state(mine, config, FILES), plan_state(mine, config, FILES))

    def test_compaction_by_another_instance_reloads_everything(
        self, tmp_path: Path, config: Config
    ):
        """A snapshot loaded anew starts a new feed: the cache reads the store again."""
        with TinyStore(tmp_path / "data") as mine, TinyStore(tmp_path / "data") as other:
            with mine.transaction() as tx:
                tx.put(CONTACTS, PEOPLE[0], contact_doc(PEOPLE[0]))
            cache = PlanCache()
            before = cache.state(mine, config, FILES)
            with other.transaction() as tx:
                tx.put(CONTACTS, PEOPLE[1], contact_doc(PEOPLE[1]))
            other.compact()
            mine.refresh()
            after = cache.state(mine, config, FILES)
            assert_same(after, plan_state(mine, config, FILES))
            assert after.contacts[PEOPLE[0]] is not before.contacts[PEOPLE[0]]

    def test_another_store_is_read_whole(self, tmp_path: Path, config: Config):
        """A mark from one store means nothing to another: the cache reloads."""
        with TinyStore(tmp_path / "a") as first, TinyStore(tmp_path / "b") as second:
            with first.transaction() as tx:
                tx.put(CONTACTS, PEOPLE[0], contact_doc(PEOPLE[0]))
            with second.transaction() as tx:
                tx.put(CONTACTS, PEOPLE[1], contact_doc(PEOPLE[1]))
            cache = PlanCache()
            cache.state(first, config, FILES)
            assert_same(cache.state(second, config, FILES), plan_state(second, config, FILES))

    def test_a_document_that_fails_to_decode_leaves_no_half_update(
        self, store: TinyStore, config: Config
    ):
        """The error propagates, and the next state is read afresh, equal to plan_state."""
        with store.transaction() as tx:
            tx.put(CONTACTS, PEOPLE[0], contact_doc(PEOPLE[0]))
        cache = PlanCache()
        cache.state(store, config, FILES)
        with store.transaction() as tx:
            tx.put(CONTACTS, PEOPLE[1], contact_doc(PEOPLE[1]))
            tx.put(MESSAGES, "broken", {**message_doc(PEOPLE[1], "one")[1], "state": "lost"})
        with pytest.raises(TomaError, match="unknown state"):
            cache.state(store, config, FILES)
        with store.transaction() as tx:
            tx.delete(MESSAGES, "broken")
        assert_same(cache.state(store, config, FILES), plan_state(store, config, FILES))

    def test_writes_to_other_tables_change_nothing(self, store: TinyStore, config: Config):
        """A write the planner does not read leaves every table as it was handed out."""
        with store.transaction() as tx:
            tx.put(CONTACTS, PEOPLE[0], contact_doc(PEOPLE[0]))
        cache = PlanCache()
        before = cache.state(store, config, FILES)
        with store.transaction() as tx:
            tx.put(SYNC, "status", {"n": 1})
        after = cache.state(store, config, FILES)
        assert after.contacts[PEOPLE[0]] is before.contacts[PEOPLE[0]]

    def test_equal_tags_are_one_tuple(self, store: TinyStore, config: Config):
        """Contacts with equal tags share one tuple of them, loaded or updated."""
        with store.transaction() as tx:
            for email in PEOPLE:
                tags = ["b", "a"] if email == PEOPLE[-1] else ["a", "b"]
                tx.put(CONTACTS, email, make_contact(email, tags=tags).to_doc())
        cache = PlanCache()
        for state in (cache.state(store, config, FILES), plan_state(store, config, FILES)):
            contacts = [state.contacts[email] for email in PEOPLE]
            assert contacts[0].tags == ("a", "b") and contacts[-1].tags == ("b", "a")
            assert all(contact.tags is contacts[0].tags for contact in contacts[1:-1])
        with store.transaction() as tx:
            tx.put(CONTACTS, PEOPLE[0], make_contact(PEOPLE[0], tags=["b", "a"]).to_doc())
        state = cache.state(store, config, FILES)
        assert state.contacts[PEOPLE[0]].tags is state.contacts[PEOPLE[-1]].tags
        assert_same(state, plan_state(store, config, FILES))


class CacheMachine(RuleBasedStateMachine):
    """Any writes, by this store or another instance, then the cache equals a fresh read."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp())
        owner = {"name": "Alex", "email": "alex@example.com", "timezone": "Europe/Berlin"}
        self.config = parse_config({"owner": owner}, file=Path("config.toml"))
        self.cache = PlanCache()

    @initialize()
    def open_stores(self) -> None:
        self.mine = TinyStore(self.folder / "data", compact_min_bytes=2048)
        self.other = TinyStore(self.folder / "data", compact_min_bytes=2048)

    def teardown(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    @rule(
        by_other=st.booleans(),
        writes=st.lists(
            st.tuples(
                st.sampled_from([CONTACTS, ENROLMENTS, MESSAGES]),
                st.sampled_from(PEOPLE),
                st.sampled_from(SEQUENCES),
                st.integers(0, 3),  # the version of the document; 3: delete it
                st.booleans(),  # a contact on hold
            ),
            min_size=1,
            max_size=6,
        ),
    )
    def transaction(self, by_other: bool, writes: list[tuple[str, str, str, int, bool]]) -> None:
        store = self.other if by_other else self.mine
        with store.transaction() as tx:
            for table, email, sequence, version, hold in writes:
                if table == CONTACTS:
                    key, doc = email, contact_doc(email, version, hold=hold)
                elif table == ENROLMENTS:
                    key, doc = enrolment_doc(email, sequence, version)
                else:
                    key, doc = message_doc(email, sequence, version)
                if version == 3:
                    tx.delete(table, key)
                else:
                    tx.put(table, key, doc)

    @rule()
    def compact_by_other(self) -> None:
        self.other.compact()

    @rule()
    def refresh(self) -> None:
        self.mine.refresh()

    @invariant()
    def cache_equals_a_fresh_read(self) -> None:
        if hasattr(self, "mine"):
            cached = self.cache.state(self.mine, self.config, FILES)
            assert_same(cached, plan_state(self.mine, self.config, FILES))


CacheMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCacheMachine = CacheMachine.TestCase
