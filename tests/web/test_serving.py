"""The web server beside the daemon: an address taken, a password, /healthz from here."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from tests.integration.projects import make_project
from toma.config import load_config
from toma.errors import TomaError
from toma.timeutil import FixedClock
from toma.web.auth import hash_password

from .conftest import NOW
from .test_dashboard import ask


def test_an_address_taken_stops_only_a_server_that_must_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from toma.daemon.serving import serving

    config = load_config(make_project(tmp_path, now=NOW))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        where = taken.getsockname()
        # toma run without public unsubscribe links: it goes on ticking without pages.
        with (
            caplog.at_level(logging.ERROR),
            serving(config, FixedClock(NOW), where, required=False) as address,
        ):
            assert address is None
        assert "dashboard not served" in caplog.text
        # toma serve, or links in the mail that must work: a clear error.
        with (
            pytest.raises(TomaError, match=r"cannot listen on 127\.0\.0\.1"),
            serving(config, FixedClock(NOW), where),
        ):
            pass


def test_with_a_password_only_healthz_answers_this_machine_without_it(tmp_path: Path) -> None:
    from toma.daemon.serving import serving

    path = make_project(tmp_path, now=NOW)
    (tmp_path / "dashboard.hash").write_text(hash_password("pw") + "\n")
    path.write_text(path.read_text() + '\n[dashboard]\npassword_file = "dashboard.hash"\n')
    with serving(load_config(path), FixedClock(NOW), ("127.0.0.1", 0)) as address:
        assert address is not None
        port = address[1]
        assert ask("127.0.0.1", port, "/healthz") == 503  # no tick yet: an answer, not 401
        assert ask("127.0.0.1", port, "/") == 401
        assert ask("127.0.0.1", port, "/status") == 401
