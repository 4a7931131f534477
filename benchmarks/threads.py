"""Wall time of one ``spalstf_impute`` with one thread per core (torch's default) and with fewer, beside busy loops.

``--threads all`` is ``n_jobs=-1`` (every core, what torch does by default and what spalstf did before it capped its
calls at ``scanpy.settings.n_jobs``); a number is that ``n_jobs``. Each configuration runs in a fresh Python process
(so torch's thread pool starts from its defaults), on the bundled
Drosophila pair with the ``"cpu"`` preset (``--max-steps`` optimiser steps, 600 by default as the preset). With
``--busy N``, N single-core busy loops run beside it for the whole measurement (a stand-in for the other jobs of a
shared node or a busy laptop). The load of the machine from other users is printed with each result: on a shared
machine, "alone" is only as alone as that load says.

Usage::

    python benchmarks/threads.py --threads all 1 --busy 0 1 --max-steps 600

Measured on a 2-core machine already loaded by other jobs, ``--max-steps 100`` (seconds of the call):

- load average about 4, no busy loop: ``all`` (2 threads) 198, ``1`` 31;
- load average about 3: ``1`` 15, ``all`` 76; with one busy loop beside it: ``1`` 30, ``all`` 154.

Measured later on the same machine, quieter (load average below 1 before each run), ``--max-steps 600``, with the
command above: alone, ``all`` 53.8 and ``1`` 71.2; with one busy loop beside it, ``all`` 193.6 (3.6x its time alone)
and ``1`` 88.6 (1.2x). Two threads win by a quarter on an idle machine and lose by more than half next to one other
job, which is why spalstf's default is one thread (``scanpy.settings.n_jobs``). ``spalstf demo`` (timed by hand with
``time``): 86 s alone and 85 s next to one busy loop at the new default, 68 s and 206 s with torch's default.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, warnings
n_jobs = -1 if sys.argv[1] == "all" else int(sys.argv[1])
max_steps = int(sys.argv[2])
import torch
import spalstf as sp
mdata = sp.datasets.drosophila_embryo()
st, sc = mdata["spatial"], mdata["rna"]
held = list(st.var_names[:8])
warnings.simplefilter("ignore")
start = time.perf_counter()
sp.tl.spalstf_impute(
    st[:, 8:].copy(), sc, genes=held, max_steps=max_steps, progress_bar=False, accelerator="cpu", n_jobs=n_jobs
)
print(json.dumps({"seconds": time.perf_counter() - start, "n_jobs": n_jobs}))
"""


def _spin(stop: mp.Event) -> None:
    x = 0
    while not stop.is_set():
        x = (x * 1103515245 + 12345) % 2**31


def measure(threads: str, busy: int, max_steps: int) -> dict:
    """One configuration in a fresh process; returns its wall time and the machine's load before and after."""
    stop = mp.Event()
    spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(busy)]
    for p in spinners:
        p.start()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, threads, str(max_steps)], env=env, capture_output=True, text=True, check=True
        )
    finally:
        stop.set()
        for p in spinners:
            p.join()
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(
        threads=threads,
        busy=busy,
        process_s=time.perf_counter() - start,
        load_before=load_before,
        load_after=os.getloadavg()[0],
        cores=os.cpu_count(),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="+", default=["all", "1"], help="'all' (one per core) or a count")
    parser.add_argument("--busy", nargs="+", type=int, default=[0, 1], help="busy loops beside the run")
    parser.add_argument("--max-steps", type=int, default=600)
    args = parser.parse_args()
    for busy in args.busy:
        for threads in args.threads:
            print(json.dumps(measure(threads, busy, args.max_steps)), flush=True)


if __name__ == "__main__":
    main()
