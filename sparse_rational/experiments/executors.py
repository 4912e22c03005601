"""Where trials run: a local process pool (default) or a Ray cluster (optional extra).

Both run the same function, :func:`~.trial.run_trial`, on a trial spec's plain-dict form,
one CPU (one torch thread) per trial, so the same trial gives the same record on either.
An executor only runs trials; the sweep (:mod:`.sweep`) decides what to run and stores
results. ``wait`` returns ``(handle, record)`` pairs, or ``(handle, exception)`` when the
executor itself lost the trial (a worker process that died, a Ray node that went away).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from typing import Any
from urllib.parse import urlparse

from ..errors import UserError
from .protocol import TrialSpec

EXECUTORS = ("local", "ray")


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:  # the driver is gone (killed): do not linger
            os._exit(1)


def _init_worker(threads: int, parent: int) -> None:
    # Ctrl-C reaches the whole process group: the driver stops the sweep and ends the
    # workers itself, so a worker must not die with its own KeyboardInterrupt traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # tqdm's default lock is a multiprocessing semaphore; a worker ended by the driver
        from tqdm import tqdm  # could not unlink it, and the resource tracker would warn

        tqdm.set_lock(threading.RLock())
    except ImportError:
        pass
    from .trial import limit_threads

    limit_threads(threads)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


@contextlib.contextmanager
def _sigint_blocked():
    """Workers started here inherit a blocked SIGINT (a Ctrl-C pressed while one starts up
    reaches the driver only; here it is delivered when the block ends, never lost)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class LocalExecutor:
    """``concurrent.futures.ProcessPoolExecutor`` with spawned workers (no inherited torch
    state), ``threads`` torch threads each. A pool broken by a dead worker is replaced.
    Public API only: a broken pool is known by :class:`BrokenProcessPool`, and the workers
    to stop on ``close(cancel=True)`` are this pool's children."""

    name = "local"

    def __init__(self, workers: int, threads: int = 1):
        self.capacity = workers
        self.threads = threads
        self._pool: cf.ProcessPoolExecutor | None = None
        self._broken = False
        self._others: set = set()  # child processes that are not this pool's workers

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._others = set(mp.active_children())
        self._broken = False
        self._pool = cf.ProcessPoolExecutor(
            self.capacity,
            mp_context=mp.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.threads, os.getpid()),
        )
        return self._pool

    def submit(self, spec: TrialSpec):
        from .trial import run_trial

        pool = self._new_pool() if self._pool is None or self._broken else self._pool
        with _sigint_blocked():  # workers are started by submit
            try:
                return pool.submit(run_trial, spec.to_dict())
            except BrokenProcessPool:  # a worker died since the last wait
                return self._new_pool().submit(run_trial, spec.to_dict())

    def wait(self, handles, timeout: float | None = None) -> list:
        done, _ = cf.wait(handles, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out = []
        for fut in done:
            exc = fut.exception()
            if isinstance(exc, BrokenProcessPool):
                self._broken = True  # the next submit starts a new pool
            out.append((fut, exc if exc is not None else fut.result()))
        return out

    def close(self, cancel: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if not cancel:
            pool.shutdown(wait=True)
            return
        # running trials: stop them, the sweep is being abandoned
        terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
        if terminate is not None:  # before shutdown, which forgets the workers
            terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            return
        procs = [p for p in mp.active_children() if p not in self._others]
        pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=5)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """One-line error for an address nobody answers at (before ray.init's long retries)."""
    if address in ("auto", "local"):
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise UserError(f"--ray-address {address}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise UserError(f"--ray-address {address}: cannot connect ({exc.strerror or exc})") from None


class RayExecutor:
    """Trials as Ray tasks (``num_cpus=threads``, no retries). Without an address a local
    Ray instance is started with ``workers`` CPUs (default: all); with one, the cluster
    must have this package (and the data under the same path, or ``--data-dir`` there)."""

    name = "ray"

    def __init__(self, address: str | None, workers: int | None, threads: int = 1):
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'sparse-rational[ray]'") from None
        import logging

        self.ray = ray
        self.threads = threads
        env = {v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        if os.environ.get("SPARSE_RATIONAL_DATA"):
            env["SPARSE_RATIONAL_DATA"] = os.environ["SPARSE_RATIONAL_DATA"]
        kwargs: dict[str, Any] = dict(
            include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, runtime_env={"env_vars": env}
        )
        self._started = False
        if not ray.is_initialized():
            if address:
                _check_reachable(address)
                try:
                    ray.init(address=address, **kwargs)
                except Exception as exc:  # ConnectionError, RuntimeError, ValueError, ...
                    msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise UserError(f"--ray-address {address}: cannot connect to Ray ({msg})") from None
            else:
                ray.init(num_cpus=workers or os.cpu_count() or 1, **kwargs)
            self._started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.capacity = max(1, min(workers, cpus // threads) if workers else cpus // threads)
        from .trial import run_trial

        self._remote = ray.remote(num_cpus=threads, max_retries=0)(run_trial)
        self._in_flight: set = set()

    def submit(self, spec: TrialSpec):
        ref = self._remote.remote(spec.to_dict())
        self._in_flight.add(ref)
        return ref

    def wait(self, handles, timeout: float | None = None) -> list:
        ready, _ = self.ray.wait(list(handles), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            self._in_flight.discard(ref)
            try:
                out.append((ref, self.ray.get(ref)))
            except Exception as exc:  # a worker or node died: the sweep records it
                out.append((ref, exc))
        return out

    def close(self, cancel: bool = False) -> None:
        if cancel:  # on a shared cluster, do not leave the abandoned trials running
            for ref in list(self._in_flight):
                try:
                    self.ray.cancel(ref, force=True)
                except Exception:  # already finished or gone
                    pass
        self._in_flight.clear()
        if self._started:
            self.ray.shutdown()
            self._started = False


def make_executor(name: str, workers: int | None, ray_address: str | None, threads: int = 1):
    if name == "local":
        if ray_address:
            raise UserError("--ray-address goes with --executor ray")
        return LocalExecutor(workers or max(1, (os.cpu_count() or 1) // threads), threads)
    if name == "ray":
        return RayExecutor(ray_address, workers, threads)
    raise UserError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
