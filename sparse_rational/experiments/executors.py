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
import threading
import time
from concurrent.futures.process import BrokenProcessPool

from tqdm import tqdm

from ..errors import UserError
from ..raycluster import connect, import_ray, runtime_env
from ..warn import warn
from .protocol import TrialSpec
from .trial import limit_threads, run_trial

EXECUTORS = ("local", "ray")


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:  # the driver is gone (killed): do not linger
            os._exit(1)


def _assign_gpu(counter, gpus: int) -> int | None:
    """The GPU of a new worker, round robin over ``gpus`` devices (``counter``: a shared
    ``multiprocessing.Value``): it becomes the worker's only visible device, its cuda:0.
    Called before the worker imports torch. None without GPUs."""
    if gpus <= 0:
        return None
    with counter.get_lock():
        slot = counter.value
        counter.value += 1
    gpu = slot % gpus
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v for v in visible.split(",") if v.strip()] if visible else [str(i) for i in range(gpus)]
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[gpu % len(ids)]
    return gpu


def _init_worker(threads: int, parent: int, counter=None, gpus: int = 0) -> None:
    _assign_gpu(counter, gpus)
    # Ctrl-C reaches the whole process group: the driver stops the sweep and ends the
    # workers itself, so a worker must not die with its own KeyboardInterrupt traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # tqdm's default lock is a multiprocessing semaphore; a worker ended by the driver
    # could not unlink it, and the resource tracker would warn
    tqdm.set_lock(threading.RLock())
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

    def __init__(self, workers: int, threads: int = 1, gpus: int = 0):
        self.capacity = self.queue_depth = workers
        self.threads = threads
        self.gpus = gpus  # > 0: workers take the GPUs round robin (--trials-per-gpu per GPU)
        self._counter = mp.get_context("spawn").Value("i", 0) if gpus else None
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
            initargs=(self.threads, os.getpid(), self._counter, self.gpus),
        )
        return self._pool

    def submit(self, spec: TrialSpec):
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


class RayExecutor:
    """Trials as Ray tasks (``num_cpus=threads``, ``num_gpus=gpus_per_trial``, no retries).
    Without an address a local Ray instance is started with ``workers`` CPUs (default: all).
    With one, this package reaches the workers through Ray's runtime environment
    (``py_modules``; with ``install``, its dependencies too, through ``pip``), so the nodes
    need Ray and the data (under the same path, or ``--data-dir`` there).

    ``queue_depth`` (twice the trials the cluster holds now, at least 4) is how many trials
    the driver keeps submitted: the pending ones show Ray's autoscaler that more nodes
    would be used."""

    name = "ray"

    def __init__(
        self,
        address: str | None,
        workers: int | None,
        threads: int = 1,
        gpus_per_trial: float = 0.0,
        install: bool = False,
    ):
        ray = import_ray("--executor ray")
        self.ray = ray
        self.threads = threads
        self._in_flight: set = set()
        env = {v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        self._started = connect(address, workers, env, install)
        resources = ray.cluster_resources()
        cpus = int(resources.get("CPU", 1))
        self.capacity = max(1, min(workers, cpus // threads) if workers else cpus // threads)
        if gpus_per_trial > 0:
            gpus = float(resources.get("GPU", 0))
            if gpus == 0 and not address:
                self.close()
                raise UserError("--gpus-per-trial: the local Ray instance has no GPU; use --device cpu")
            if gpus == 0:
                warn("the Ray cluster has no GPU now: the trials wait for its autoscaler to add GPU nodes")
            self.capacity = max(1, min(self.capacity, int(gpus / gpus_per_trial + 1e-9)))
        self.queue_depth = max(2 * self.capacity, 4)
        self._remote = ray.remote(num_cpus=threads, num_gpus=gpus_per_trial, max_retries=0)(run_trial)

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


def ray_runtime_env(install: bool = False) -> dict:
    """:func:`sparse_rational.raycluster.runtime_env` (the earlier name)."""
    return runtime_env(install)


def make_executor(
    name: str,
    workers: int | None,
    ray_address: str | None,
    threads: int = 1,
    gpus: int = 0,
    trials_per_gpu: int = 1,
    gpus_per_trial: float = 0.0,
    install: bool = False,
):
    """``local``: a process pool (with ``gpus``: ``trials_per_gpu`` workers per GPU unless
    ``workers`` says otherwise); ``ray``: Ray tasks (``gpus_per_trial`` GPUs each)."""
    if name == "local":
        if ray_address:
            raise UserError("--ray-address goes with --executor ray")
        if gpus:
            return LocalExecutor(workers or gpus * trials_per_gpu, threads, gpus)
        return LocalExecutor(workers or max(1, (os.cpu_count() or 1) // threads), threads)
    if name == "ray":
        return RayExecutor(ray_address, workers, threads, gpus_per_trial, install)
    raise UserError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
