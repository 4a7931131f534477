"""Peak memory of a block of code: the one meter of the package and its benchmarks (bytes; MiB on display)."""

from __future__ import annotations

import ctypes
import gc
import os
import threading
from collections.abc import Callable

import numpy as np

MIB = 2**20


def _status_bytes(field: str) -> float:
    """A ``kB`` field of ``/proc/self/status`` in bytes (NaN where there is none)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float("nan")


def _rss_reader() -> Callable[[], float]:
    """A function returning the process's resident set size in bytes (NaN when it cannot be read)."""
    try:
        import psutil

        process = psutil.Process()
        return lambda: float(process.memory_info().rss)
    except ImportError:  # pragma: no cover - psutil is a dependency of scanpy's stack here
        return lambda: _status_bytes("VmRSS")


def rss_bytes() -> float:
    """Current resident set size of this process in bytes (NaN when it cannot be read).

    Examples
    --------
    >>> rss_bytes() > 0
    True
    """
    return _rss_reader()()


def _reset_kernel_peak() -> bool:
    """Reset the kernel's high-water mark of the resident set (Linux ``clear_refs``); whether that worked."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return not np.isnan(_status_bytes("VmHWM"))
    except OSError:
        return False


def release_freed_memory() -> None:
    """Collect garbage and ask glibc to return freed heap pages to the OS (no-op elsewhere)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


class PeakMemory:
    """Context manager measuring the peak resident memory of the process during a block.

    On entry, garbage is collected and glibc's free pages are released, then the resident set size (RSS) is read
    as :attr:`baseline_bytes`. The peak is the kernel's high-water mark of the RSS (``VmHWM``, reset on entry) where
    Linux allows resetting it, so no spike is missed; elsewhere a background thread samples the RSS every
    ``interval`` seconds (plus once on exit), and a spike shorter than that can be missed. RSS counts everything the
    process holds in RAM (Python objects, NumPy and torch buffers, native libraries), which ``tracemalloc`` misses,
    and the memory of every thread of the process. Meters do not nest: entering one resets the high-water mark that
    an enclosing one reads.

    Parameters
    ----------
    interval
        Sampling period in seconds (used without the kernel's high-water mark).

    Examples
    --------
    >>> import numpy as np
    >>> with PeakMemory() as mem:
    ...     x = np.ones(50_000_000)  # 400 MB
    ...     del x
    >>> mem.peak_mb > 300
    True
    """

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self._read = _rss_reader()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._kernel = False
        self.baseline_bytes = float("nan")
        self.peak_bytes = float("nan")

    def _sample(self) -> None:
        value = self._read()
        if not np.isnan(value) and (np.isnan(self.peak_bytes) or value > self.peak_bytes):
            self.peak_bytes = value

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> PeakMemory:
        release_freed_memory()
        self.baseline_bytes = self._read()
        self.peak_bytes = self.baseline_bytes
        self._kernel = os.name == "posix" and _reset_kernel_peak()
        if not self._kernel:
            self._thread = threading.Thread(target=self._run, name="spalstf-peak-memory", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        if self._kernel:
            hwm = _status_bytes("VmHWM")
            if not np.isnan(hwm):
                self.peak_bytes = max(self.peak_bytes, hwm)

    @property
    def increase_bytes(self) -> float:
        """Peak RSS over the value on entry, in bytes (0 or more; NaN if RSS cannot be read)."""
        increase = self.peak_bytes - self.baseline_bytes
        return float("nan") if np.isnan(increase) else max(0.0, increase)

    @property
    def peak_mb(self) -> float:
        """Peak RSS increase over the value on entry, in MiB (0 or more; NaN if RSS cannot be read)."""
        return self.increase_bytes / MIB
