"""Scoring a stream of batches in N worker processes, the results in input order
(``predict --workers N``, ``evaluate --workers N``).

The parent hands batch ``i`` to worker ``i mod N`` (a batch may be the lines themselves, or
where they are in a file, which the worker reads: ``sparse_rational.cli``) and writes the results
batch after batch, in the order it read them; each worker answers its batches in the order
it got them, so the parent reads worker ``i mod N``'s next answer for batch ``i``. At most
``depth`` batches per worker are in flight: the parent's memory (and every worker's) is
bounded by that many batches whatever the input's size.

The workers are forked after the model is loaded (they share its pages, nothing is loaded
again) and talk to the parent through pipes: a worker whose pipe closes (the parent died)
ends, and on Linux a worker is also killed when its parent dies
(``PR_SET_PDEATHSIG``). Ctrl-C and SIGTERM go to the parent, which ends every worker
before it exits: nothing is left behind. A worker that dies (killed, out of memory) or
fails ends the run with :class:`~sparse_rational.errors.WorkerFailed`, whose one line says
how many results were written: only a whole batch's results are ever written, so no line is cut.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import queue
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from .argtypes import MAX_WORKERS
from .errors import UserError, WorkerFailed, one_line

PREDICT_PROGRESS = "{done} lines were written (whole lines only, in input order); the rest of the input was not scored"
_STARTING = {signal.SIGINT, signal.SIGTERM}  # blocked while a worker is forked


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (best effort elsewhere: the pipe's
    end-of-file ends the worker too)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _serve(tasks: Connection, results: Connection, job: Callable[[Any], Any], parent: int) -> None:
    """A worker's loop: a thread receives batches into a queue (so that the parent never
    blocks sending while this process blocks sending a result), the main thread answers
    them in order. ``None`` or end-of-file on ``tasks`` ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends the workers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STARTING)  # blocked by the parent while it forked us
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(0)
    inbox: queue.Queue = queue.Queue()

    def receive() -> None:
        while True:
            try:
                item = tasks.recv()
            except (EOFError, OSError):
                item = None
            inbox.put(item)
            if item is None:
                return

    threading.Thread(target=receive, daemon=True).start()
    while True:
        item = inbox.get()
        if item is None:
            return
        try:
            answer: tuple[str, Any] = ("ok", job(item))
        except UserError as exc:  # bad input (a line that is not UTF-8): the parent says it, exit 2
            answer = ("user", str(exc))
        except BaseException as exc:  # told to the parent, which stops the run in one line
            answer = ("error", f"{type(exc).__name__}: {one_line(exc, 300)}")
        try:
            results.send(answer)
        except (BrokenPipeError, OSError):
            return


def _describe(process: multiprocessing.process.BaseProcess) -> str:
    process.join(timeout=1.0)
    code = process.exitcode
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def ordered_map(
    job: Callable[[Any], Any],
    batches: Iterable[Any],
    workers: int,
    count: Callable[[Any], int] = len,
    depth: int = 2,
    progress: str = PREDICT_PROGRESS,
) -> Iterator[Any]:
    """``job(batch)`` for every batch, computed in ``workers`` forked processes, yielded in
    the order of ``batches`` (module doc). The caller writes each result before asking for
    the next; a worker that dies or fails ends it with :class:`WorkerFailed`, its one line
    saying which worker and how, then ``progress`` with ``{done}``: the sum of
    ``count(result)`` over the results that were yielded and asked past."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be 1..{MAX_WORKERS}, got {workers}")
    context = multiprocessing.get_context("fork")
    for stream in (sys.stdout, sys.stderr):  # a child must not write the parent's buffered output again
        if stream is not None:
            stream.flush()
    procs: list[multiprocessing.process.BaseProcess] = []
    to_worker: list[Connection] = []
    from_worker: list[Connection] = []
    try:
        for _ in range(workers):
            task_r, task_w = context.Pipe(duplex=False)
            result_r, result_w = context.Pipe(duplex=False)
            process = context.Process(
                target=_child,
                args=(task_r, result_w, job, os.getpid(), [*to_worker, *from_worker, task_w, result_r]),
                daemon=True,
            )
            # A Ctrl-C while the child is not yet ignoring it would raise KeyboardInterrupt in
            # the child: block SIGINT/SIGTERM across the fork (the child inherits the mask and
            # unblocks once it ignores them); the parent gets a pending one on unblocking.
            signal.pthread_sigmask(signal.SIG_BLOCK, _STARTING)
            try:
                process.start()
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _STARTING)
            task_r.close()
            result_w.close()
            procs.append(process)
            to_worker.append(task_w)
            from_worker.append(result_r)
        pending: deque[int] = deque()  # the worker of every batch in flight, in order
        done = 0

        def failed(k: int, why: str) -> WorkerFailed:
            return WorkerFailed(f"worker {k + 1} of {workers} {why}; " + progress.format(done=done))

        def answer() -> Any:
            k = pending.popleft()
            try:
                status, value = from_worker[k].recv()
            except (EOFError, OSError):
                raise failed(k, _describe(procs[k])) from None
            if status == "user":
                raise UserError(value)
            if status != "ok":
                raise failed(k, f"failed ({value})")
            return value

        for index, batch in enumerate(batches):
            while len(pending) >= workers * depth:
                value = answer()
                yield value
                done += count(value)
            k = index % workers
            try:
                to_worker[k].send(batch)
            except (BrokenPipeError, ConnectionResetError, OSError):
                raise failed(k, _describe(procs[k])) from None
            pending.append(k)
        while pending:
            value = answer()
            yield value
            done += count(value)
        for conn in to_worker:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in procs:
            proc.join()
    finally:
        for conn in (*to_worker, *from_worker):
            conn.close()
        for proc in procs:  # Ctrl-C, an error, a reader that went away: no worker is left behind
            if proc.is_alive():
                proc.kill()
        for proc in procs:
            proc.join()


def _child(tasks: Connection, results: Connection, job: Callable, parent: int, others: list[Connection]) -> None:
    for conn in others:  # the other workers' and the parent's pipe ends: only the parent holds them
        conn.close()
    _serve(tasks, results, job, parent)
