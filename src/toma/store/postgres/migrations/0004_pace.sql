-- toma's store on PostgreSQL, version 4: when each enrolment last took a turn of the pace.
--
--   paced_at  when the enrolment's latest sequence message that counts for the pace
--             went: sent, sending or unknown (core/outbox.PACED), at the same moment
--             as `since` reckons it
--
-- No message goes to a contact sooner than `[pace] min_gap` after their latest one
-- (core/turns.py), so a contact whose latest paced message is that recent has nothing
-- due, however many steps wait: a tick leaves them out unread (toma.store.postgres.due).
-- Invoice reminders, newsletters and mail written by hand count for the pace too; they
-- are not here, which can only make this moment earlier than the planner's: a contact
-- is then read for nothing, never left out wrongly.

ALTER TABLE toma_progress ADD COLUMN paced_at timestamptz;

-- A message of a sequence that takes a turn of the pace (the planner's rule for these).
CREATE FUNCTION toma_paces(doc jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(doc ->> 'state' IN ('sending', 'sent', 'unknown')
                    AND coalesce(doc ->> 'kind', 'sequence') = 'sequence', false)
$$;

CREATE OR REPLACE FUNCTION toma_progress_messages(who text, seq text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    latest timestamptz;
    latest_step text;
    latest_paced timestamptz;
    retry timestamptz;
BEGIN
    SELECT max(m.at), (array_agg(m.step ORDER BY m.at DESC, m.step DESC)
                       FILTER (WHERE m.step !~ '^repeat-[0-9]+$'))[1],
           max(m.at) FILTER (WHERE m.paces)
    INTO latest, latest_step, latest_paced
    FROM (
        SELECT toma_moment(coalesce(nullif(doc ->> 'sent_at', ''), nullif(doc ->> 'updated_at', ''),
                                    doc ->> 'due_at')) AS at,
               coalesce(doc ->> 'step', '') AS step,
               toma_paces(doc::jsonb) AS paces
        FROM toma_documents
        WHERE tbl = 'messages' AND doc ->> 'contact' = who AND doc ->> 'sequence' = seq
          AND doc ->> 'state' IN ('sending', 'sent', 'unknown', 'failed', 'skipped')
    ) AS m
    WHERE m.at IS NOT NULL;
    SELECT min(toma_moment(doc ->> 'next_attempt_at')) INTO retry
    FROM toma_documents
    WHERE tbl = 'messages' AND doc ->> 'contact' = who AND doc ->> 'sequence' = seq
      AND doc ->> 'state' = 'planned';
    INSERT INTO toma_progress AS p (contact, sequence, anchor, anchor_step, since, retry_at,
                                    paced_at)
    VALUES (who, seq, latest, coalesce(latest_step, ''), latest, retry, latest_paced)
    ON CONFLICT (contact, sequence) DO UPDATE
    SET anchor = EXCLUDED.anchor,
        anchor_step = EXCLUDED.anchor_step,
        since = coalesce(EXCLUDED.anchor, p.enrolled_at),
        retry_at = EXCLUDED.retry_at,
        paced_at = EXCLUDED.paced_at;
END $$;

-- Version 3's common write, which now moves `paced_at` with the anchor. A message that
-- took a turn and no longer does (sending, then failed) reads the messages again: the
-- turn goes back to the one before.
CREATE OR REPLACE FUNCTION toma_progress_attempt(before jsonb, after jsonb) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    tried constant text[] := ARRAY['sending', 'sent', 'unknown', 'failed', 'skipped'];
    step constant text := coalesce(after ->> 'step', '');
    paces constant boolean := toma_paces(after);
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
            IF coalesce(before ->> 'step', '') <> step OR toma_paces(before) <> paces THEN
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
    -- Later than every attempt before it: the latest paced one too, when it paces.
    UPDATE toma_progress
    SET anchor = moment, since = moment,
        anchor_step = CASE WHEN step ~ '^repeat-[0-9]+$' THEN anchor_step ELSE step END,
        paced_at = CASE WHEN paces THEN moment ELSE paced_at END
    WHERE contact = after ->> 'contact' AND sequence = after ->> 'sequence';
    RETURN true;
END $$;

CREATE OR REPLACE FUNCTION toma_progress_rebuild() RETURNS void
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
    INSERT INTO toma_progress AS p (contact, sequence, anchor, anchor_step, since, retry_at,
                                    paced_at)
    SELECT who, seq,
           max(at) FILTER (WHERE tried),
           coalesce((array_agg(step ORDER BY at DESC, step DESC)
                     FILTER (WHERE tried AND at IS NOT NULL AND step !~ '^repeat-[0-9]+$'))[1], ''),
           NULL,
           min(retry) FILTER (WHERE NOT tried),
           max(at) FILTER (WHERE paces)
    FROM (
        SELECT doc ->> 'contact' AS who, doc ->> 'sequence' AS seq,
               coalesce(doc ->> 'step', '') AS step,
               doc ->> 'state' IN ('sending', 'sent', 'unknown', 'failed', 'skipped') AS tried,
               toma_paces(doc::jsonb) AS paces,
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
        retry_at = EXCLUDED.retry_at, paced_at = EXCLUDED.paced_at;
    UPDATE toma_progress SET since = coalesce(anchor, enrolled_at);
    UPDATE toma_progress AS p SET receives = true
    FROM toma_documents AS c
    WHERE c.tbl = 'contacts' AND c.key = p.contact
      AND coalesce(toma_field(c.doc, 'status'), 'active') = 'active';
END $$;

-- Filled in from the messages already written, as the rebuild above would: one pass
-- over the messages, a quarter of the time a whole rebuild takes.
UPDATE toma_progress AS p SET paced_at = m.at
FROM (
    SELECT doc ->> 'contact' AS who, doc ->> 'sequence' AS seq,
           max(toma_moment(coalesce(nullif(doc ->> 'sent_at', ''),
                                    nullif(doc ->> 'updated_at', ''), doc ->> 'due_at'))) AS at
    FROM toma_documents
    WHERE tbl = 'messages' AND doc ->> 'sequence' IS NOT NULL AND doc ->> 'contact' IS NOT NULL
      AND toma_paces(doc::jsonb)
    GROUP BY 1, 2
) AS m
WHERE p.contact = m.who AND p.sequence = m.seq;

-- Who the pace holds back at a moment: the few sent to within the gap, found by a
-- range scan rather than by looking up each contact a tick finds due.
CREATE INDEX toma_progress_paced ON toma_progress (paced_at) INCLUDE (contact)
    WHERE paced_at IS NOT NULL;
