"""How long `toma --version`, `toma --help` and `toma status --help` take to start.

    .venv/bin/python bench/cli_start.py [RUNS]

Each command runs RUNS times (default 15) as a new process, the way a shell or a
completion script runs it; prints the median and the fastest, beside the
interpreter alone (`python -c pass`) and `python -c "import click"`, so that the
figures can be read on a busy machine: the goal is under 0.15 s for --version and
--help. The machine's other load moves the medians; the fastest run is the
figure closest to what the command costs.

Measured on the 2-core development machine at load average ~7 (15 runs):
python -c pass 0.017 s median / 0.014 s fastest; import click 0.059 / 0.052;
toma --version 0.089 / 0.067; toma --help 0.161 / 0.070; toma -h 0.110 / 0.069.
Before commands were imported lazily, the same --version took 1.385 / 0.911
and --help 0.679 / 0.590 (10 runs, load ~9).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

TOMA = str(Path(sys.executable).with_name("toma"))
CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import click'": [sys.executable, "-c", "import click"],
    "toma --version": [TOMA, "--version"],
    "toma --help": [TOMA, "--help"],
    "toma -h": [TOMA, "-h"],
    "toma status --help": [TOMA, "status", "--help"],
}


def timings(command: list[str], runs: int) -> list[float]:
    found = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
        found.append(time.perf_counter() - started)
    return found


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    print(f"{'command':28} {'median':>8} {'fastest':>8}   ({runs} runs each)")
    for name, command in CASES.items():
        found = timings(command, runs)
        print(f"{name:28} {statistics.median(found):7.3f}s {min(found):7.3f}s")


if __name__ == "__main__":
    main()
