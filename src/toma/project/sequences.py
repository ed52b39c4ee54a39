"""The project's ``sequences/`` folder, read: every sequence file as it is now.

Parsing one file is pure (:func:`toma.core.sequences.parse_sequence`); this
module reads the folder, reports each broken file and holds its sequence.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from toma.config import Config
from toma.core.sequences import Sequence, SequenceProblem, _Locator, held_sequences, parse_sequence
from toma.errors import SequenceError


def load_sequences(
    folder: Path, *, windows: Collection[str]
) -> tuple[dict[str, Sequence], list[SequenceError]]:
    """Every ``*.toml`` in ``folder`` (in name order), and the problems found.

    A broken file is reported and left out; the others still load. A second
    file with a name already taken is an error, and since the name is then
    ambiguous it is held (see :func:`held_sequences`) until one is renamed. A
    folder that does not exist holds no sequences.
    """
    sequences: dict[str, Sequence] = {}
    errors: list[SequenceError] = []
    if not folder.exists():
        return sequences, errors
    if not folder.is_dir():
        errors.append(SequenceProblem("the sequences path is not a folder", file=folder))
        return sequences, errors
    for path in sorted(folder.glob("*.toml")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(SequenceProblem(f"cannot read: {exc}", file=path, sequence=path.stem))
            continue
        try:
            sequence = parse_sequence(path, text, windows=windows)
        except SequenceError as exc:
            errors.append(exc)
            continue
        first = sequences.get(sequence.name)
        if first is not None:
            errors.append(
                SequenceProblem(
                    f"sequence {sequence.name!r} is already defined in {first.file.name}: "
                    "give each sequence its own name",
                    file=path,
                    line=_Locator(text).line("name"),
                    key="name",
                    sequence=sequence.name,
                )
            )
            continue
        sequences[sequence.name] = sequence
    return sequences, errors


@dataclass(frozen=True)
class Files:
    """The sequence files as read at one moment."""

    sequences: dict[str, Sequence]
    problems: list[SequenceError] = field(default_factory=list)
    held: frozenset[str] = frozenset()


def read_sequences(config: Config) -> Files:
    sequences, problems = load_sequences(config.paths.sequences, windows=set(config.windows))
    return Files(sequences, problems, held_sequences(problems))
