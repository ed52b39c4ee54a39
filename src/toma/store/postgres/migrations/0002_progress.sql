-- toma's store on PostgreSQL, version 2: where each enrolment stands, kept by triggers,
-- so that a tick asks which contacts can have a step due instead of reading every table
-- (see toma.store.postgres.due).
--
-- One row per (contact, sequence) that has an enrolment or a sequence message:
--   enrolled     an enrolment document exists, neither stopped nor paused without end
--   receives     the contact exists and is active (core/lastcheck.RECEIVES["sequence"])
--   since        when the enrolment's latest attempted message went (sent, sending,
--                unknown, failed or skipped: sent_at, else updated_at, else due_at),
--                else when the contact was enrolled
--   anchor       that moment, when there is such a message
--   anchor_step  the step of the latest attempted message that is not a repeat
--                ('' when there is none)
--   retry_at     the earliest retry a temporary failure waits for
-- Only facts of the store live here: which steps follow which, and how long after, is
-- the sequence files' business, and the tick brings it to the query.

CREATE TABLE toma_progress (
    contact     text        NOT NULL,
    sequence    text        NOT NULL,
    enrolled    boolean     NOT NULL DEFAULT false,
    receives    boolean     NOT NULL DEFAULT false,
    enrolled_at timestamptz,
    anchor      timestamptz,
    anchor_step text        NOT NULL DEFAULT '',
    since       timestamptz,
    retry_at    timestamptz,
    PRIMARY KEY (contact, sequence)
);
-- The contact included: the range scans read the index alone.
CREATE INDEX toma_progress_due ON toma_progress (sequence, anchor_step, since) INCLUDE (contact)
    WHERE enrolled AND receives;
CREATE INDEX toma_progress_retry ON toma_progress (retry_at)
    WHERE enrolled AND receives AND retry_at IS NOT NULL;

-- A moment as the store writes it; NULL for anything that is not one, so that a
-- damaged document never makes a write fail here (the planner reports it).
CREATE FUNCTION toma_moment(value text) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF value IS NULL OR value = '' THEN
        RETURN NULL;
    END IF;
    RETURN value::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

-- The messages' side of one (contact, sequence), read again from its messages.
CREATE FUNCTION toma_progress_messages(who text, seq text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    latest timestamptz;
    latest_step text;
    retry timestamptz;
BEGIN
    SELECT max(m.at), (array_agg(m.step ORDER BY m.at DESC, m.step DESC)
                       FILTER (WHERE m.step !~ '^repeat-[0-9]+$'))[1]
    INTO latest, latest_step
    FROM (
        SELECT toma_moment(coalesce(nullif(doc ->> 'sent_at', ''), nullif(doc ->> 'updated_at', ''),
                                    doc ->> 'due_at')) AS at,
               coalesce(doc ->> 'step', '') AS step
        FROM toma_documents
        WHERE tbl = 'messages' AND doc ->> 'contact' = who AND doc ->> 'sequence' = seq
          AND doc ->> 'state' IN ('sending', 'sent', 'unknown', 'failed', 'skipped')
    ) AS m
    WHERE m.at IS NOT NULL;
    SELECT min(toma_moment(doc ->> 'next_attempt_at')) INTO retry
    FROM toma_documents
    WHERE tbl = 'messages' AND doc ->> 'contact' = who AND doc ->> 'sequence' = seq
      AND doc ->> 'state' = 'planned';
    INSERT INTO toma_progress AS p (contact, sequence, anchor, anchor_step, since, retry_at)
    VALUES (who, seq, latest, coalesce(latest_step, ''), latest, retry)
    ON CONFLICT (contact, sequence) DO UPDATE
    SET anchor = EXCLUDED.anchor,
        anchor_step = EXCLUDED.anchor_step,
        since = coalesce(EXCLUDED.anchor, p.enrolled_at),
        retry_at = EXCLUDED.retry_at;
END $$;

-- The common write, made cheap: a message of this enrolment attempted at a moment
-- later than any before (a send marked `sending`, then `sent`), or written again
-- unchanged in what counts here. Anything else (a retry waiting, a moment moved
-- back, a record going back to `planned`, a tie) reads the messages again.
CREATE FUNCTION toma_progress_sent(before json, after json) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    tried constant text[] := ARRAY['sending', 'sent', 'unknown', 'failed', 'skipped'];
    step constant text := coalesce(after ->> 'step', '');
    moment timestamptz;
    previous timestamptz;
    latest timestamptz;
BEGIN
    IF NOT coalesce(after ->> 'state' = ANY(tried), false) THEN
        RETURN false;
    END IF;
    moment := toma_moment(coalesce(nullif(after ->> 'sent_at', ''),
                                   nullif(after ->> 'updated_at', ''), after ->> 'due_at'));
    IF moment IS NULL THEN
        RETURN false;
    END IF;
    IF before IS NOT NULL THEN
        IF before ->> 'state' = 'planned' AND coalesce(before ->> 'next_attempt_at', '') <> '' THEN
            RETURN false;
        END IF;
        IF coalesce(before ->> 'state' = ANY(tried), false) THEN
            IF coalesce(before ->> 'step', '') <> step THEN
                RETURN false;
            END IF;
            previous := toma_moment(coalesce(nullif(before ->> 'sent_at', ''),
                                             nullif(before ->> 'updated_at', ''),
                                             before ->> 'due_at'));
            IF previous = moment THEN
                RETURN true;  -- the same attempt at the same moment: nothing changes here
            END IF;
            IF previous IS NULL OR previous > moment THEN
                RETURN false;
            END IF;
        END IF;
    END IF;
    SELECT anchor INTO latest FROM toma_progress
    WHERE contact = after ->> 'contact' AND sequence = after ->> 'sequence';
    IF NOT FOUND OR moment <= latest THEN
        RETURN false;
    END IF;
    UPDATE toma_progress
    SET anchor = moment, since = moment,
        anchor_step = CASE WHEN step ~ '^repeat-[0-9]+$' THEN anchor_step ELSE step END
    WHERE contact = after ->> 'contact' AND sequence = after ->> 'sequence';
    RETURN true;
END $$;

-- The enrolment's side: whether it is planned at all, and from when.
CREATE FUNCTION toma_planned(doc json) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT doc IS NOT NULL AND (coalesce(doc ->> 'state', 'active') = 'active'
                                OR (doc ->> 'state' = 'paused'
                                    AND coalesce(doc ->> 'paused_until', '') <> ''))
$$;

-- A contact's field, from a document that may hold what PostgreSQL cannot turn into
-- text (a NUL character, written as \u0000: ->> on such a document fails, whatever
-- field it asks for). Messages and enrolments cannot hold one: their expression
-- indexes would refuse the document first.
CREATE FUNCTION toma_field(doc json, name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN doc ->> name;
EXCEPTION WHEN others THEN
    BEGIN
        RETURN replace(doc::text, '\u0000', '')::json ->> name;
    EXCEPTION WHEN others THEN
        RETURN NULL;
    END;
END $$;

CREATE FUNCTION toma_receives(who text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT coalesce(toma_field(doc, 'status'), 'active') = 'active'
                     FROM toma_documents WHERE tbl = 'contacts' AND key = who), false)
$$;

-- The enrolment's side: whether it is planned at all, and from when.
CREATE FUNCTION toma_progress_enrolment(who text, seq text, doc json) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := toma_moment(doc ->> 'enrolled_at');
BEGIN
    INSERT INTO toma_progress AS p (contact, sequence, enrolled, receives, enrolled_at, since)
    VALUES (who, seq, toma_planned(doc), toma_receives(who), started, started)
    ON CONFLICT (contact, sequence) DO UPDATE
    SET enrolled = EXCLUDED.enrolled,
        receives = EXCLUDED.receives,
        enrolled_at = EXCLUDED.enrolled_at,
        since = coalesce(p.anchor, EXCLUDED.enrolled_at);
END $$;

CREATE FUNCTION toma_progress_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    was_messages boolean := false;
    was_enrolment boolean := false;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        was_messages := OLD.tbl = 'messages' AND OLD.doc ->> 'sequence' IS NOT NULL
                        AND OLD.doc ->> 'contact' IS NOT NULL;
        was_enrolment := OLD.tbl = 'enrolments' AND OLD.doc ->> 'sequence' IS NOT NULL
                         AND OLD.doc ->> 'contact' IS NOT NULL;
        IF TG_OP = 'UPDATE' THEN
            -- Moved to another (contact, sequence), or out of the table: the old one too.
            IF OLD.doc ->> 'contact' IS NOT DISTINCT FROM NEW.doc ->> 'contact'
               AND OLD.doc ->> 'sequence' IS NOT DISTINCT FROM NEW.doc ->> 'sequence'
               AND OLD.tbl = NEW.tbl THEN
                was_messages := false;
                was_enrolment := false;
            END IF;
        END IF;
    END IF;
    IF was_messages THEN
        PERFORM toma_progress_messages(OLD.doc ->> 'contact', OLD.doc ->> 'sequence');
    END IF;
    IF was_enrolment THEN
        PERFORM toma_progress_enrolment(OLD.doc ->> 'contact', OLD.doc ->> 'sequence', NULL);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.doc ->> 'sequence' IS NOT NULL
       AND NEW.doc ->> 'contact' IS NOT NULL THEN
        IF NEW.tbl = 'messages' THEN
            IF was_messages OR NOT toma_progress_sent(
                CASE WHEN TG_OP = 'UPDATE' AND OLD.tbl = 'messages' THEN OLD.doc END, NEW.doc
            ) THEN
                PERFORM toma_progress_messages(NEW.doc ->> 'contact', NEW.doc ->> 'sequence');
            END IF;
        ELSIF NEW.tbl = 'enrolments' THEN
            PERFORM toma_progress_enrolment(NEW.doc ->> 'contact', NEW.doc ->> 'sequence', NEW.doc);
        END IF;
    END IF;
    RETURN NULL;
END $$;

-- A contact written or deleted: whether its enrolments are planned.
CREATE FUNCTION toma_progress_contact() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    who constant text := CASE WHEN TG_OP = 'DELETE' THEN OLD.key ELSE NEW.key END;
BEGIN
    UPDATE toma_progress SET receives = toma_receives(who) WHERE contact = who;
    RETURN NULL;
END $$;

CREATE TRIGGER toma_progress_contact_insert AFTER INSERT ON toma_documents FOR EACH ROW
    WHEN (NEW.tbl = 'contacts') EXECUTE FUNCTION toma_progress_contact();
CREATE TRIGGER toma_progress_contact_update AFTER UPDATE ON toma_documents FOR EACH ROW
    WHEN (NEW.tbl = 'contacts') EXECUTE FUNCTION toma_progress_contact();
CREATE TRIGGER toma_progress_contact_delete AFTER DELETE ON toma_documents FOR EACH ROW
    WHEN (OLD.tbl = 'contacts') EXECUTE FUNCTION toma_progress_contact();

CREATE TRIGGER toma_progress_insert AFTER INSERT ON toma_documents FOR EACH ROW
    WHEN (NEW.tbl IN ('messages', 'enrolments')) EXECUTE FUNCTION toma_progress_touch();
CREATE TRIGGER toma_progress_update AFTER UPDATE ON toma_documents FOR EACH ROW
    WHEN (OLD.tbl IN ('messages', 'enrolments') OR NEW.tbl IN ('messages', 'enrolments'))
    EXECUTE FUNCTION toma_progress_touch();
CREATE TRIGGER toma_progress_delete AFTER DELETE ON toma_documents FOR EACH ROW
    WHEN (OLD.tbl IN ('messages', 'enrolments')) EXECUTE FUNCTION toma_progress_touch();

-- Every row again from the documents: for a database written before this version, and
-- for a bulk load made with the trigger switched off.
CREATE FUNCTION toma_progress_rebuild() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM toma_progress;
    INSERT INTO toma_progress (contact, sequence, enrolled, enrolled_at, since)
    SELECT DISTINCT ON (doc ->> 'contact', doc ->> 'sequence')
           doc ->> 'contact', doc ->> 'sequence',
           toma_planned(doc),
           toma_moment(doc ->> 'enrolled_at'), toma_moment(doc ->> 'enrolled_at')
    FROM toma_documents
    WHERE tbl = 'enrolments' AND doc ->> 'contact' IS NOT NULL AND doc ->> 'sequence' IS NOT NULL
    ORDER BY doc ->> 'contact', doc ->> 'sequence', ord DESC;
    INSERT INTO toma_progress AS p (contact, sequence, anchor, anchor_step, since, retry_at)
    SELECT who, seq,
           max(at) FILTER (WHERE tried),
           coalesce((array_agg(step ORDER BY at DESC, step DESC)
                     FILTER (WHERE tried AND at IS NOT NULL AND step !~ '^repeat-[0-9]+$'))[1], ''),
           NULL,
           min(retry) FILTER (WHERE NOT tried)
    FROM (
        SELECT doc ->> 'contact' AS who, doc ->> 'sequence' AS seq,
               coalesce(doc ->> 'step', '') AS step,
               doc ->> 'state' IN ('sending', 'sent', 'unknown', 'failed', 'skipped') AS tried,
               toma_moment(coalesce(nullif(doc ->> 'sent_at', ''), nullif(doc ->> 'updated_at', ''),
                                    doc ->> 'due_at')) AS at,
               CASE WHEN doc ->> 'state' = 'planned'
                    THEN toma_moment(doc ->> 'next_attempt_at') END AS retry
        FROM toma_documents
        WHERE tbl = 'messages' AND doc ->> 'sequence' IS NOT NULL AND doc ->> 'contact' IS NOT NULL
          AND doc ->> 'state' IN ('sending', 'sent', 'unknown', 'failed', 'skipped', 'planned')
    ) AS m
    GROUP BY who, seq
    ON CONFLICT (contact, sequence) DO UPDATE
    SET anchor = EXCLUDED.anchor, anchor_step = EXCLUDED.anchor_step,
        retry_at = EXCLUDED.retry_at;
    UPDATE toma_progress SET since = coalesce(anchor, enrolled_at);
    UPDATE toma_progress AS p SET receives = true
    FROM toma_documents AS c
    WHERE c.tbl = 'contacts' AND c.key = p.contact
      AND coalesce(toma_field(c.doc, 'status'), 'active') = 'active';
END $$;

SELECT toma_progress_rebuild();

-- What a daily limit counts: the messages written in the last day or so.
CREATE INDEX toma_messages_updated ON toma_documents ((doc ->> 'updated_at')) WHERE tbl = 'messages';
