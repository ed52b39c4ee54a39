"""Which contacts can have something due: the PostgreSQL store's answer, by index.

``toma_progress`` (migration 0002) keeps, per enrolment, when its latest
attempted message went (``since``), that message's step (``anchor_step``) and
the earliest retry waiting, maintained by triggers on every write of a message
or an enrolment, whoever makes it. :mod:`toma.core.earliest` gives, from the
sequence files, the least delay after ``since`` for each ``anchor_step``.

The steps present are found by a skip scan of the index ``(sequence,
anchor_step, since)``: one index descent per distinct pair, a few dozen at
most, however many enrolments there are. Then one range scan per pair asks for
``since <= horizon - delay``: the enrolments that can be ready, and no others.
Finished enrolments (their latest step was the last, no repeat) are never
scanned. Retries come from their own partial index. A contact the pace holds
back (a sequence message that paces went less than the gap ago, ``paced_at``)
is left out of both: the few sent to within the gap come from an index of
their own (``toma_progress_paced``), not from a look-up of every contact found.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import psycopg

from toma.core.earliest import Earliest

Conn = psycopg.Connection[tuple[Any, ...]]

_PAIRS = """
WITH RECURSIVE pairs AS (
    (SELECT sequence, anchor_step FROM toma_progress WHERE enrolled AND receives
     ORDER BY sequence, anchor_step LIMIT 1)
    UNION ALL
    SELECT next.sequence, next.anchor_step FROM pairs, LATERAL (
        SELECT sequence, anchor_step FROM toma_progress
        WHERE enrolled AND receives
          AND (sequence, anchor_step) > (pairs.sequence, pairs.anchor_step)
        ORDER BY sequence, anchor_step LIMIT 1
    ) AS next
)
SELECT sequence, anchor_step FROM pairs
"""

# A contact the pace holds back (paced_at, version 4) has nothing ready, whatever is
# due: a NULL bound holds nobody back.
_NOT_PACED = (
    "NOT EXISTS (SELECT 1 FROM toma_progress AS paced"
    " WHERE paced.contact = p.contact AND paced.paced_at > %s)"
)

_READY = (
    "SELECT contact FROM toma_progress AS p"  # noqa: S608 - constants only
    " WHERE enrolled AND receives AND sequence = %s AND anchor_step = %s AND since <= %s"
    f" AND {_NOT_PACED}"
)

_RETRIES = (
    "SELECT contact FROM toma_progress AS p"  # noqa: S608 - constants only
    " WHERE enrolled AND receives AND retry_at IS NOT NULL AND retry_at <= %s"
    f" AND sequence = ANY(%s) AND {_NOT_PACED}"
)


def due_contacts(conn: Conn, earliest: Earliest, horizon: datetime) -> set[str]:
    """The contacts with an enrolment that can have a step ready by ``horizon``."""
    found: set[str] = set()
    paced = None
    if earliest.gap is not None:
        with contextlib.suppress(OverflowError):  # a gap past the calendar holds none back
            paced = horizon - earliest.gap
    pairs = conn.execute(_PAIRS).fetchall()
    with conn.cursor() as cur:
        for sequence, anchor_step in pairs:
            delay = earliest.delay(sequence, anchor_step)
            if delay is None:
                continue
            try:
                latest = horizon - delay
            except OverflowError:
                continue  # a delay longer than the calendar: never
            cur.execute(_READY, (sequence, anchor_step, latest, paced))
            found.update(row[0] for row in cur)
        cur.execute(_RETRIES, (horizon, list(earliest.otherwise), paced))
        found.update(row[0] for row in cur)
    return found


_UNENROLLED = """
SELECT c.key FROM toma_documents AS c
WHERE c.tbl = 'contacts' AND coalesce(c.doc ->> 'status', 'active') = 'active'
  AND json_typeof(c.doc -> 'tags') = 'array' AND (c.doc -> 'tags')::jsonb ? %(tag)s
  AND NOT EXISTS (
      SELECT 1 FROM toma_documents AS e
      WHERE e.tbl = 'enrolments' AND e.key = %(sequence)s || '/' || c.key
  )
"""


def tagged_unenrolled(
    conn: Conn, tag: str, sequence: str, among: list[str] | None = None
) -> set[str]:
    """Active contacts carrying ``tag`` with no enrolment in ``sequence`` (in any state),
    among ``among`` when given (the enrolment's key: see
    :func:`toma.core.enrolments.enrolment_key`)."""
    query = _UNENROLLED if among is None else _UNENROLLED + " AND c.key = ANY(%(among)b::text[])"
    rows = conn.execute(query, {"tag": tag, "sequence": sequence, "among": among}).fetchall()
    return {row[0] for row in rows}
