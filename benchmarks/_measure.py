"""Shared helpers of the scaling benchmarks: peak memory of this process, fresh worker processes, result tables.

Peak memory is measured with the package's one meter, :class:`spalstf.benchmark.PeakMemory` (the kernel's high-water
mark of the resident set, reset at the start of each measured phase).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from spalstf.benchmark import PeakMemory, rss_bytes  # noqa: F401 (re-exported to the scripts)

#: Decimal gigabyte, the unit of the scaling tables.
GB = 1e9


def run_worker(script: str, args: list[str], threads: int) -> dict:
    """Run ``script --worker args`` in a fresh Python process and return the JSON dict it prints last."""
    env_threads = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run(
        [sys.executable, script, "--worker", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env_threads},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> str:
    """One line describing the machine and torch build."""
    cores = os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.machine()}, {cores} CPU cores, {gpu}, torch {torch.__version__}, Python {platform.python_version()}"
    )


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """Rows as a markdown table with the given columns."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def save(rows: list[dict], out: Path, name: str, meta: dict) -> None:
    """Write ``<out>/<name>.csv`` and ``<out>/<name>.json`` (rows plus the command and machine)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(out / f"{name}.json", "w") as f:
        json.dump({**meta, "rows": rows}, f, indent=2)
