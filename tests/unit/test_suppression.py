"""The suppression list: keyed hashes that outlive forget, and who may write past them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from toma.core.contacts import Status, make_contact
from toma.core.enrolments import Enrolment
from toma.core.suppression import Entry, Reason, canonical, entry_for, key_for, merged
from toma.errors import ContactError, StoreError, TomaError
from toma.store import ENROLMENTS, META, SUPPRESSION, Store, open_store
from toma.store.records import contacts as addressbook
from toma.store.records.enrolments import enrol, record_tag_enrolments

SECRET = b"k" * 32
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
MIRA = "mira.keller@example.org"


class TestKeys:
    @pytest.mark.parametrize("spelling", [MIRA, "Mira.Keller@Example.ORG", f" <{MIRA}> "])
    def test_every_spelling_has_one_key(self, spelling: str) -> None:
        assert key_for(spelling, SECRET) == key_for(MIRA, SECRET)

    def test_the_key_holds_no_address_and_depends_on_the_secret(self) -> None:
        key = key_for(MIRA, SECRET)
        assert key.startswith("h1:") and len(key) == 3 + 64
        assert "mira" not in key and "example" not in key
        assert key_for(MIRA, b"j" * 32) != key
        assert key_for("jonas@example.net", SECRET) != key

    def test_an_odd_address_still_gets_a_key(self) -> None:
        """A bounce may name something that is no valid address: hashed as written, lowered."""
        assert canonical("  <Not An Address>  ") == "not an address"
        assert key_for("Not An Address", SECRET) == key_for("not an address", SECRET)

    def test_a_short_secret_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least 16 bytes"):
            key_for(MIRA, b"short")

    def test_entry_for_gives_key_and_document(self) -> None:
        key, doc = entry_for(MIRA, Reason.BOUNCED, "2026-11-25T10:00:00Z", SECRET, by="bounce")
        assert key == key_for(MIRA, SECRET)
        assert doc == {"reason": "bounced", "at": "2026-11-25T10:00:00Z", "by": "bounce"}
        assert Entry.from_doc(doc) == Entry(Reason.BOUNCED, "2026-11-25T10:00:00Z", "bounce")


class TestMerged:
    @pytest.mark.parametrize(
        ("old", "new", "kept"),
        [
            (None, Reason.BOUNCED, Reason.BOUNCED),
            (Reason.BOUNCED, Reason.FORGOTTEN, Reason.FORGOTTEN),
            (Reason.BOUNCED, Reason.UNSUBSCRIBED, Reason.UNSUBSCRIBED),
            (Reason.FORGOTTEN, Reason.UNSUBSCRIBED, Reason.UNSUBSCRIBED),
            (Reason.UNSUBSCRIBED, Reason.FORGOTTEN, Reason.UNSUBSCRIBED),
            (Reason.UNSUBSCRIBED, Reason.BOUNCED, Reason.UNSUBSCRIBED),
            (Reason.FORGOTTEN, Reason.BOUNCED, Reason.FORGOTTEN),
        ],
    )
    def test_an_entry_only_gets_stronger(
        self, old: Reason | None, new: Reason, kept: Reason
    ) -> None:
        before = Entry(old, "2026-01-01T00:00:00Z") if old else None
        assert merged(before, Entry(new, "2026-02-01T00:00:00Z")).reason is kept

    def test_of_equal_reasons_the_first_date_stays(self) -> None:
        first = Entry(Reason.UNSUBSCRIBED, "2026-01-01T00:00:00Z", "one-click unsubscribe")
        assert merged(first, Entry(Reason.UNSUBSCRIBED, "2026-02-01T00:00:00Z")) == first

    def test_statuses(self) -> None:
        assert Reason.BOUNCED.status is Status.BOUNCED
        assert Reason.FORGOTTEN.status is Status.UNSUBSCRIBED
        assert Reason.UNSUBSCRIBED.status is Status.UNSUBSCRIBED


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = open_store(tmp_path / "data")
    addressbook.add(opened, make_contact(MIRA, first_name="Mira", tags=["met"]), now=NOW)
    return opened


class TestStored:
    def test_nothing_suppressed_makes_no_secret(self, store: Store) -> None:
        assert addressbook.suppression_secret(store) is None
        assert addressbook.suppression_of(store, MIRA) is None

    def test_unsubscribe_writes_status_and_entry_in_one_go(self, store: Store) -> None:
        contact = addressbook.unsubscribe(
            store, "MIRA.keller@example.org", now=NOW, by="one-click unsubscribe"
        )
        assert contact is not None and contact.status is Status.UNSUBSCRIBED
        entry = addressbook.suppression_of(store, MIRA)
        assert entry == Entry(
            Reason.UNSUBSCRIBED, "2026-11-25T10:00:00+00:00", "one-click unsubscribe"
        )
        assert addressbook.unsubscribe(store, MIRA, now=NOW, by="again") == contact

    def test_unsubscribe_of_nobody_still_suppresses(self, store: Store) -> None:
        """A forgotten person pressing an old link: their objection is kept."""
        assert addressbook.unsubscribe(store, "gone@example.org", now=NOW, by="x") is None
        with pytest.raises(ContactError, match="on the suppression list"):
            addressbook.add(store, make_contact("gone@example.org"), now=NOW)

    def test_a_resumed_bounce_is_lifted(self, store: Store) -> None:
        addressbook.set_status(store, MIRA, Status.BOUNCED, now=NOW, reason="5.1.1")
        assert addressbook.suppression_of(store, MIRA) == Entry(
            Reason.BOUNCED, "2026-11-25T10:00:00+00:00", "5.1.1"
        )
        resumed = addressbook.set_status(store, MIRA, Status.ACTIVE, now=NOW)
        assert resumed.status is Status.ACTIVE
        assert addressbook.suppression_of(store, MIRA) is None

    def test_a_stronger_entry_refuses_a_resume(self, store: Store) -> None:
        """An unsubscribe on the list (recorded by another writer) outranks the owner's resume."""
        addressbook.set_status(store, MIRA, Status.BOUNCED, now=NOW)
        with store.transaction() as tx:
            addressbook.suppress(tx, MIRA, Reason.UNSUBSCRIBED, now=NOW, by="asked by email")
        with pytest.raises(ContactError, match="on the suppression list"):
            addressbook.set_status(store, MIRA, Status.ACTIVE, now=NOW)

    def test_a_stored_contact_on_the_list_is_never_made_active(self, store: Store) -> None:
        """The list wins over a record that says active (a restored backup, another writer)."""
        with store.transaction() as tx:
            addressbook.suppress(tx, MIRA, Reason.UNSUBSCRIBED, now=NOW, by="asked by email")
        again, created = addressbook.add(store, make_contact(MIRA, company="K&P"), now=NOW)
        assert not created
        assert again.status is Status.UNSUBSCRIBED
        assert again.status_reason.startswith("on the suppression list: unsubscribed on")

    def test_forget_keeps_the_stronger_reason(self, store: Store) -> None:
        addressbook.set_status(store, MIRA, Status.UNSUBSCRIBED, now=NOW, reason="by hand")
        addressbook.forget(store, MIRA, now=NOW)
        entry = addressbook.suppression_of(store, MIRA)
        assert entry is not None and entry.reason is Reason.UNSUBSCRIBED
        assert store.count(SUPPRESSION) == 1

    def test_a_damaged_secret_is_an_error_not_an_empty_list(self, store: Store) -> None:
        addressbook.forget(store, MIRA, now=NOW)
        with store.transaction() as tx:
            tx.put(META, addressbook.SUPPRESSION_SECRET_KEY, {"secret": "c2hvcnQ="})
        with pytest.raises(StoreError, match="damaged"):
            addressbook.add(store, make_contact(MIRA), now=NOW)

    def test_a_suppressed_contact_is_not_enrolled_by_hand(self, store: Store) -> None:
        addressbook.set_status(store, MIRA, Status.BOUNCED, now=NOW)
        with pytest.raises(TomaError, match="is bounced"):
            enrol(store, MIRA, "keep", now=NOW)
        assert store.count(ENROLMENTS) == 0

    def test_tag_enrolments_are_checked_again_when_written(self, store: Store) -> None:
        """A tick decides from what it read; whoever left since gets no enrolment."""
        addressbook.add(store, make_contact("jonas@example.net", tags=["met"]), now=NOW)
        addressbook.add(store, make_contact("sofia@example.fr", tags=["met"]), now=NOW)
        decided = [
            Enrolment(contact=address, sequence="keep", enrolled_at=NOW, source="tag")
            for address in (MIRA, "jonas@example.net", "sofia@example.fr")
        ]
        addressbook.unsubscribe(store, MIRA, now=NOW, by="one-click unsubscribe")
        addressbook.forget(store, "jonas@example.net", now=NOW)
        written = record_tag_enrolments(store, decided)
        assert [e.contact for e in written] == ["sofia@example.fr"]
        assert [key for key, _doc in store.all(ENROLMENTS)] == [written[0].key]
        assert record_tag_enrolments(store, decided) == []
