"""argparse value types shared by the subcommands (errors become one-line usage errors)."""

from __future__ import annotations

import argparse
import math
import os

from .warn import warn

# the most processes --workers may ask for (predict, evaluate, serve, Ray scoring): each loads
# the model, and a typo must not fork thousands
MAX_WORKERS = 256


def int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def int_between(minimum: int, maximum: int):
    """An argparse type: an integer from ``minimum`` to ``maximum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"expected an integer from {minimum} to {maximum}, got {text[:40]!r}")
        return value

    return parse


positive_int = int_at_least(1)
nonneg_int = int_at_least(0)


def nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (NaN or infinity made the first batch's loss NaN)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def nonneg_or_auto(text: str) -> float | str:
    """``auto``, or a finite number >= 0."""
    return "auto" if text.strip().lower() == "auto" else nonneg_float(text)


def probability(text: str) -> float:
    value = nonneg_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1), got {text!r}")
    return value


MAX_SEED = 2**32 - 1  # numpy's and torch's generators both take seeds in [0, 2^32)


def seed(text: str) -> int:
    """An argparse type: a random seed, an integer in [0, 2^32)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {MAX_SEED}, got {text[:40]!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = nonneg_float(text)
    except argparse.ArgumentTypeError:  # one message for every value refused (-1, nan, x)
        value = 0.0
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def growth(text: str) -> float:
    value = nonneg_float(text)
    if not value > 1:
        raise argparse.ArgumentTypeError(f"expected a factor > 1, got {text!r}")
    return value


def targets(text: str) -> int | tuple[int, ...]:
    """One target size (``20``) or several, comma-separated (``80,60,40,20``)."""
    parts = [p.strip() for p in text.split(",")]
    values = []
    for p in parts:
        try:
            value = int(p) if p.isdigit() and len(p) < 10 else None
        except ValueError:
            value = None
        if value is None or value < 1:
            raise argparse.ArgumentTypeError(
                f"expected positive integers, comma-separated, got {p[:20]!r} in {text[:60]!r}"
            )
        values.append(value)
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{text[:60]!r} names a target twice")
    return values[0] if len(values) == 1 else tuple(sorted(values, reverse=True))


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def capped_threads(threads: int, option: str = "--threads") -> int:
    """``threads``, at most the machine's cores: more only add memory and contention
    (each thread has its buffers), so a larger value is cut with a one-line warning."""
    cores = machine_cores()
    if threads > cores:
        warn(f"{option} {threads}: this machine has {cores} cores; using {cores} threads")
        return cores
    return threads


def threads_int(text: str) -> int:
    """An argparse type: a positive integer, capped at the machine's cores (:func:`capped_threads`)."""
    return capped_threads(positive_int(text))


def add_threads_argument(parser: argparse.ArgumentParser, help: str = "torch threads (default: torch's choice)"):
    """``--threads N`` (a positive integer, at most the machine's cores), the one definition
    that every subcommand taking it shares; :func:`use_threads` applies it to PyTorch."""
    parser.add_argument("--threads", type=threads_int, help=help + "; more than the machine's cores are cut to them")


def use_threads(threads: int | None) -> None:
    """Apply ``--threads`` to PyTorch (imported only when it was given)."""
    if threads:
        import torch  # lazy: start-up (torch)

        torch.set_num_threads(threads)
