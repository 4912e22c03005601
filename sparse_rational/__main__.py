"""The command line's entry point: the ``sparse-rational`` script and ``python -m sparse_rational``.

It does one thing before anything imports numpy: a scoring command (``predict``) asks
numpy's OpenBLAS for one thread, unless the user chose a thread count for it. OpenBLAS
starts its thread pool when numpy is imported, which cost ~90 ms of CPU here, 40 % of
``predict``'s start-up (docs/results/predict_workers.md, follow-up 3), and ``predict``
never multiplies a matrix large enough to need a second thread: its recurrence runs in C,
one document at a time, and ``--workers`` uses processes, forked without the pool.

It also asks glibc's allocator to keep the memory a batch frees for the next batch
(:func:`keep_batch_memory`): a batch's arrays of token ids (megabytes) were mapped from
the kernel and given back after every batch, 170,000 page faults and ~8 % of the time of
``predict`` on 240,000 reviews (docs/results/predict_workers.md, follow-up 4). The command
itself is :func:`sparse_rational.cli.main`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping, Sequence

from .commandline import command_of  # imports no numpy (tests/test_entry.py)

SINGLE_THREADED_BLAS = frozenset({"predict"})
# OpenBLAS reads these in this order; a user who set any of them has chosen.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


def limit_blas_threads(argv: Sequence[str], environ: MutableMapping[str, str] | None = None) -> bool:
    """Ask OpenBLAS for one thread when ``argv`` runs a command of
    :data:`SINGLE_THREADED_BLAS` and ``environ`` sets no thread count; True if it did.
    It acts only if numpy is imported afterwards."""
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    if command_of(argv) not in SINGLE_THREADED_BLAS or any(name in env for name in BLAS_THREAD_VARIABLES):
        return False
    env["OPENBLAS_NUM_THREADS"] = "1"
    return True


# glibc's mallopt parameters, and what predict sets them to: blocks up to MMAP_THRESHOLD come
# from the heap (not one mapping each), and up to TRIM_THRESHOLD of freed heap stays mapped
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD, TRIM_THRESHOLD = 32 << 20, 256 << 20


def keep_batch_memory(argv: Sequence[str]) -> bool:
    """For a command of :data:`SINGLE_THREADED_BLAS` on glibc: blocks of up to 32 MiB come
    from the heap and freed heap is kept (up to 256 MiB) for the next batch, instead of
    being mapped and unmapped again batch after batch. True if it did. Memory stays bounded
    by the largest batch, as before."""
    if command_of(argv) not in SINGLE_THREADED_BLAS or not sys.platform.startswith("linux"):
        return False
    import ctypes  # lazy: start-up (other commands)

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def main(argv: Sequence[str] | None = None) -> int:
    """``sparse-rational``: :func:`sparse_rational.cli.main` after :func:`limit_blas_threads`
    and :func:`keep_batch_memory`."""
    args = sys.argv[1:] if argv is None else argv
    limit_blas_threads(args)
    keep_batch_memory(args)
    from .cli import main as cli_main  # lazy: start-up (after the line above: the CLI imports numpy)

    return cli_main(None if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
