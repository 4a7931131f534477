"""Execute the tutorials in full mode and store them with their outputs (what the docs show).

Each notebook of ``tutorials/`` is run top to bottom with nbclient in its own kernel, from the notebook's folder,
with one torch and BLAS thread (``OMP_NUM_THREADS=1``; the notebooks' texts state the times of such a run), and
written back in place. The test suite checks that the stored notebooks were run in order, without errors and with
figures; it runs them itself only in the quick mode (``SPALSTF_TUTORIAL_MODE=quick``).

Usage::

    python scripts/run_tutorials.py                     # all tutorials
    python scripts/run_tutorials.py quickstart          # some of them, by name
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"


def run(path: Path, timeout: int) -> float:
    """Execute ``path`` in full mode, save it in place and return the wall time in seconds."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    nbformat.write(nb, path)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="tutorial names (default: all)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell at most")
    args = parser.parse_args()
    os.environ.pop("SPALSTF_TUTORIAL_MODE", None)  # full mode
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    paths = [TUTORIALS / f"{n}.ipynb" for n in args.names] if args.names else sorted(TUTORIALS.glob("*.ipynb"))
    for path in paths:
        print(f"{path.name}: {run(path, args.timeout):.0f} s", flush=True)


if __name__ == "__main__":
    main()
