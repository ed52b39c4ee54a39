-- toma's store on PostgreSQL, version 3: the progress trigger (version 2) reads each
-- document it is given once.
--
-- A `json` value is text: every `->>` on it parses the document again, up to the field
-- asked for, and the trigger asked a dozen questions of each message written (three
-- writes per message sent: marked sending, handed over, its outcome). Here each
-- document is turned into `jsonb` once, and the questions are asked of that. What the
-- trigger decides is unchanged (tests/store/test_due.py holds it equal to a rebuild).

CREATE FUNCTION toma_progress_attempt(before jsonb, after jsonb) RETURNS boolean
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

CREATE OR REPLACE FUNCTION toma_progress_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    old_doc jsonb;
    new_doc jsonb;
    was_messages boolean := false;
    was_enrolment boolean := false;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        old_doc := OLD.doc::jsonb;
        was_messages := OLD.tbl = 'messages' AND old_doc ->> 'sequence' IS NOT NULL
                        AND old_doc ->> 'contact' IS NOT NULL;
        was_enrolment := OLD.tbl = 'enrolments' AND old_doc ->> 'sequence' IS NOT NULL
                         AND old_doc ->> 'contact' IS NOT NULL;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_doc := NEW.doc::jsonb;
        IF TG_OP = 'UPDATE' THEN
            -- Moved to another (contact, sequence), or out of the table: the old one too.
            IF old_doc ->> 'contact' IS NOT DISTINCT FROM new_doc ->> 'contact'
               AND old_doc ->> 'sequence' IS NOT DISTINCT FROM new_doc ->> 'sequence'
               AND OLD.tbl = NEW.tbl THEN
                was_messages := false;
                was_enrolment := false;
            END IF;
        END IF;
    END IF;
    IF was_messages THEN
        PERFORM toma_progress_messages(old_doc ->> 'contact', old_doc ->> 'sequence');
    END IF;
    IF was_enrolment THEN
        PERFORM toma_progress_enrolment(old_doc ->> 'contact', old_doc ->> 'sequence', NULL);
    END IF;
    IF TG_OP <> 'DELETE' AND new_doc ->> 'sequence' IS NOT NULL
       AND new_doc ->> 'contact' IS NOT NULL THEN
        IF NEW.tbl = 'messages' THEN
            IF was_messages OR NOT toma_progress_attempt(
                CASE WHEN TG_OP = 'UPDATE' AND OLD.tbl = 'messages' THEN old_doc END, new_doc
            ) THEN
                PERFORM toma_progress_messages(new_doc ->> 'contact', new_doc ->> 'sequence');
            END IF;
        ELSIF NEW.tbl = 'enrolments' THEN
            PERFORM toma_progress_enrolment(new_doc ->> 'contact', new_doc ->> 'sequence', NEW.doc);
        END IF;
    END IF;
    RETURN NULL;
END $$;

DROP FUNCTION toma_progress_sent(json, json);
