from __future__ import annotations

import asyncio
import sys

import pytest

from toma import eventloop


async def loop_type() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop is not installed on Windows")
def test_sends_run_on_uvloop_where_it_is_installed() -> None:
    assert eventloop.name() == "uvloop"
    assert eventloop.run(loop_type()).startswith("uvloop")


def test_without_uvloop_asyncio_does_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as on a platform without it
    assert eventloop.name() == "asyncio"
    assert eventloop.run(loop_type()).startswith("asyncio")
