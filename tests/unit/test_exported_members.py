"""The library's public names: each listed once, each importable, nothing private."""

from __future__ import annotations

import toma


def test_all_names_exist_and_are_public() -> None:
    assert len(toma.__all__) == len(set(toma.__all__))
    for name in toma.__all__:
        assert not name.startswith("_")
        assert getattr(toma, name) is not None, name


def test_exceptions_form_one_family() -> None:
    errors = [
        getattr(toma, n)
        for n in toma.__all__
        if n.endswith(("Error", "Locked", "Failure", "Problem"))
    ]
    assert errors
    for error in errors:
        assert issubclass(error, toma.TomaError), error
