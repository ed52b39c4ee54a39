"""``toma init``: a complete, working project folder to start from.

The files come from the ``starter`` folder shipped beside this module (the same
files the repository shows as ``config.example.toml``, ``sequences/`` and
``templates/``); the sample contacts are imported into the new data store, so
that ``toma check`` passes and ``toma run --once`` sends at once.
"""

from __future__ import annotations

import csv
import shutil
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path

from toma.config import load_config
from toma.errors import TomaError
from toma.store import open_store
from toma.store.records import contacts as addressbook
from toma.store.records import invoices as billing

SCAFFOLD_ITEMS = ("config.toml", "sequences", "templates", "newsletters", "samples")


def _date_samples(path: Path, today: date) -> None:
    """Move the sample invoices' issue dates to a few weeks before ``today``.

    The shipped file has fixed dates; a new project should show invoices that
    are due soon or just overdue, whatever the day it is made.
    """
    rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    if not rows:
        return
    shipped = [date.fromisoformat(row["issued"]) for row in rows]
    shift = today - timedelta(days=10) - max(shipped)
    for row in rows:
        row["issued"] = (date.fromisoformat(row["issued"]) + shift).isoformat()
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


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
    source = resources.files("toma.project") / "starter"
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
        sample_invoices = folder / "samples" / "invoices.csv"
        _date_samples(sample_invoices, now.date())
        invoices = billing.import_file(store, sample_invoices, config, today=now.date())
    finally:
        store.close()
    problems = report.problems + invoices.problems
    if problems:  # the shipped samples are known good: this is a packaging fault
        raise problems[0]
    return config.file
