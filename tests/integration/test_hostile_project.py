"""Project files holding characters no record can keep: refused where they are written,
or made harmless, and never a write that fails in the middle of a send.

PostgreSQL refuses a NUL in any document (its progress index reads them as
``jsonb``), so on that store a NUL reaching a message's record would fail the
journal's write and end the send for everyone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.projects import TEMPLATE, make_project
from tests.postgres import PgServer
from toma.config import load_config
from toma.daemon.worker import Worker
from toma.errors import SequenceError
from toma.project.sequences import read_sequences
from toma.store import MESSAGES, open_store
from toma.store.copy import copy_store
from toma.store.postgres import PgStore

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday


def test_a_subject_with_control_characters_is_sent_and_recorded_as_one_clean_line(
    tmp_path: Path, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_project(tmp_path, contacts=3, now=NOW)
    config.write_text(
        config.read_text() + '\n[store]\nkind = "postgres"\ndsn_env = "TOMA_HOSTILE_DSN"\n'
    )
    (tmp_path / "templates" / "hello.md").write_text(
        # YAML's escapes in the front matter: a NUL and an ESC that clears a terminal.
        TEMPLATE.replace("Hello {{", "Hello\\0\\e[2J {{"),
        encoding="utf-8",
    )
    with pg_server.database() as dsn:
        monkeypatch.setenv("TOMA_HOSTILE_DSN", dsn)
        # The contacts were written to the embedded store by make_project: copy them over.
        with open_store(tmp_path / "var" / "data") as source, PgStore(dsn) as target:
            copy_store(source, target)
        with PgStore(dsn) as store:
            report = Worker(config, store, sync_inbox=False).run_once(NOW)
            assert not report.problems, report.problems
            assert report.sent == 3
            subjects = {doc["subject"] for _key, doc in store.all(MESSAGES)}
    # As the header has it: the controls gone, what they carried left as plain text.
    assert subjects == {"Hello [2J P0", "Hello [2J P1", "Hello [2J P2"}
    delivered = list((tmp_path / "var" / "outbox" / "new").iterdir())
    assert len(delivered) == 3
    assert all(b"\x00" not in path.read_bytes() for path in delivered)


@pytest.mark.parametrize("value", ["hello\x00.md", "hello\n.md", "hello\x1b.md"])
def test_a_template_name_with_control_characters_is_refused_where_it_is_written(
    tmp_path: Path, value: str
) -> None:
    config = make_project(tmp_path, now=NOW)
    sequence = tmp_path / "sequences" / "keep.toml"
    escaped = "".join(f"\\u{ord(c):04x}" if ord(c) < 32 else c for c in value)
    sequence.write_text(sequence.read_text().replace('"hello.md"', f'"{escaped}"'))
    files = read_sequences(load_config(config))
    assert "keep" in files.held
    (problem,) = files.problems
    assert isinstance(problem, SequenceError)
    assert problem.file == str(sequence)
    assert problem.key == "steps[0].template"
    assert "control character" in problem.message
