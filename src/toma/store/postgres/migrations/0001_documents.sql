-- toma's store on PostgreSQL, version 1: every table of documents in one relation,
-- the change feed, and the numbers daemons take to claim their messages.

CREATE TABLE toma_documents (
    tbl        text   NOT NULL,
    key        text   NOT NULL,
    doc        json   NOT NULL,  -- json, not jsonb: a document reads back in its own key order
    ord        bigint NOT NULL,  -- insertion order, which all() keeps as the embedded store does
    claimed_by bigint,           -- the daemon that marked this message `sending` (messages only)
    PRIMARY KEY (tbl, key)
);
CREATE SEQUENCE toma_order;
CREATE INDEX toma_documents_order ON toma_documents (tbl, ord);

-- The questions the records layer asks instead of reading whole tables.
CREATE INDEX toma_messages_state ON toma_documents ((doc ->> 'state')) WHERE tbl = 'messages';
CREATE INDEX toma_messages_contact ON toma_documents ((doc ->> 'contact')) WHERE tbl = 'messages';
CREATE INDEX toma_messages_kind_ref
    ON toma_documents ((doc ->> 'kind'), (doc ->> 'ref')) WHERE tbl = 'messages';
CREATE INDEX toma_enrolments_contact
    ON toma_documents ((doc ->> 'contact')) WHERE tbl = 'enrolments';
CREATE INDEX toma_conversations_contact
    ON toma_documents ((doc ->> 'contact')) WHERE tbl = 'conversations';
CREATE INDEX toma_conversations_kind
    ON toma_documents ((doc ->> 'kind')) WHERE tbl = 'conversations';
CREATE INDEX toma_conversations_answers
    ON toma_documents ((doc ->> 'answers')) WHERE tbl = 'conversations';
CREATE INDEX toma_invoices_status ON toma_documents ((doc ->> 'status')) WHERE tbl = 'invoices';
CREATE INDEX toma_invoices_contact ON toma_documents ((doc ->> 'contact')) WHERE tbl = 'invoices';

-- The change feed: one row per put or delete, numbered in commit order (writers are
-- serialised, see the package's theory of operation). Rows at or below `floor` are gone.
CREATE TABLE toma_changes (
    seq     bigserial PRIMARY KEY,
    tbl     text    NOT NULL,
    key     text    NOT NULL,
    deleted boolean NOT NULL
);
CREATE TABLE toma_feed (
    id    text   NOT NULL,
    floor bigint NOT NULL
);
INSERT INTO toma_feed (id, floor) VALUES (md5(random()::text || clock_timestamp()::text), 0);

-- A daemon's number: it holds the advisory lock (classid 'tomb', objid = number) while it lives.
CREATE SEQUENCE toma_daemons;
