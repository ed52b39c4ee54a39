"""``toma init``: a complete, working project folder to start from.

The files come from the ``scaffold`` folder shipped inside the package (the same
files the repository shows as ``config.example.toml``, ``sequences/`` and
``templates/``); the sample contacts are imported into the new data store, so
that ``toma check`` passes and ``toma run --once`` sends at once.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from importlib import resources
from pathlib import Path

from toma import addressbook
from toma.config import load_config
from toma.errors import TomaError
from toma.store import open_store

SCAFFOLD_ITEMS = ("config.toml", "sequences", "templates", "newsletters", "samples")


def init_project(folder: Path, *, now: datetime) -> Path:
    """Create a project in ``folder``; return its config path. Never overwrites."""
    clashes = [name for name in SCAFFOLD_ITEMS if (folder / name).exists()]
    if clashes:
        raise TomaError(
            f"{folder} already holds a project ({', '.join(clashes)}): "
            "nothing was changed; choose an empty or new folder",
            file=folder,
        )
    folder.mkdir(parents=True, exist_ok=True)
    source = resources.files("toma") / "scaffold"
    with resources.as_file(source) as root:
        for name in SCAFFOLD_ITEMS:
            item = Path(root) / name
            if item.is_dir():
                shutil.copytree(item, folder / name, ignore=shutil.ignore_patterns(".keep"))
            else:
                shutil.copy2(item, folder / name)
    (folder / "newsletters").mkdir(exist_ok=True)
    config = load_config(folder / "config.toml")
    store = open_store(config.paths.data)
    try:
        report = addressbook.import_file(store, folder / "samples" / "contacts.csv", now=now)
    finally:
        store.close()
    if report.problems:  # the shipped samples are known good: this is a packaging fault
        raise report.problems[0]
    return config.file
