"""Where a benchmark number comes from: the command, the code, the machine, the date.

Every benchmark script stores ``provenance(...)`` under the key ``"provenance"`` of its JSON:

* ``argv``: the command line as run (script path first);
* ``git``: ``{"sha", "dirty"}`` of the checkout the script lives in (``dirty``: tracked files
  differ from that commit; untracked files are not counted), or ``None`` outside a git
  checkout;
* ``date``: UTC, ISO 8601, to the second;
* ``python``, ``torch``, ``numpy``: versions; ``threads``: ``torch.get_num_threads()`` when
  the results were recorded;
* ``machine``: CPU model (``model name`` in ``/proc/cpuinfo``, else ``platform.processor()``),
  architecture, operating system, ``cpu_count`` (logical cores of the machine) and
  ``cpus_available`` (the cores this process may run on); never the host name;
* ``gpu`` (only when the run used a CUDA device): its name, compute capability, the CUDA
  version torch was built with, and Triton's version when it is installed.

The benchmarks run as ``python benchmarks/NAME.py``, so this folder is on ``sys.path`` and they
import this module as ``_provenance``.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(_REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state() -> dict | None:
    """``{"sha": ..., "dirty": bool}`` of the checkout holding this file, or None."""
    sha = _git("rev-parse", "HEAD")
    if not sha:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha.strip(), "dirty": None if status is None else bool(status.strip())}


def cpu_model() -> str:
    """The CPU's marketing name (first ``model name`` of /proc/cpuinfo), else what platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "arch": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu_count": os.cpu_count(),
        "cpus_available": available,
    }


def gpu(device) -> dict | None:
    """Name, capability and CUDA version of ``device`` if it is a CUDA device, else None."""
    import torch

    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    info = {
        "name": torch.cuda.get_device_name(device),
        "capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
        "cuda": torch.version.cuda,
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except Exception:  # not installed or broken: not part of this run
        pass
    return info


def provenance(argv: list[str] | None = None, device=None) -> dict:
    """The provenance record of a run (see module doc). ``argv``: the arguments ``main`` was
    given (None: ``sys.argv[1:]``); ``device``: the torch device the run measured, if any."""
    import numpy
    import torch

    args = sys.argv[1:] if argv is None else list(argv)
    record = {
        "argv": [sys.argv[0] if sys.argv and sys.argv[0] else "?", *args],
        "git": git_state(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "threads": torch.get_num_threads(),
        "machine": machine(),
    }
    if device is not None:
        info = gpu(device)
        if info is not None:
            record["gpu"] = info
    return record


__all__ = ["cpu_model", "git_state", "gpu", "machine", "provenance"]
