"""errors.py draws the whole exception family: every TomaError subclass, where it lives."""

from __future__ import annotations

import importlib
import pkgutil
import re

import toma
from toma import errors
from toma.errors import TomaError


def every_subclass() -> set[type[TomaError]]:
    for info in pkgutil.walk_packages(toma.__path__, "toma."):
        if info.name != "toma.__main__":  # runs the command line
            importlib.import_module(info.name)
    found: set[type[TomaError]] = set()
    todo = [TomaError]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("toma.") and sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def drawn() -> dict[str, str]:
    """Name -> the name drawn as its parent, from the tree in errors.py's docstring."""
    parents: dict[str, str] = {}
    path = ["TomaError"]
    for line in (errors.__doc__ or "").splitlines():
        # The tree is indented by four spaces in the docstring, then four per level.
        found = re.match(r"^    ((?:│   |    )*)(?:├── |└── )(\w+)", line)
        if found:
            depth = len(found.group(1)) // 4 + 1
            del path[depth:]
            parents[found.group(2)] = path[-1]
            path.append(found.group(2))
    return parents


def test_the_tree_names_every_error_and_no_other() -> None:
    assert set(drawn()) == {error.__name__ for error in every_subclass()}


def test_the_tree_draws_each_error_under_its_parent() -> None:
    parents = drawn()
    for error in every_subclass():
        assert parents[error.__name__] == error.__mro__[1].__name__, error.__name__
