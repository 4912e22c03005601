"""Reaching a Ray cluster: the address check, the runtime environment that carries this
package to the workers, and one ``connect`` shared by the sweeps (experiments/executors.py)
and batch scoring (scoring.py). Ray is an optional extra: it is imported only here, when a
caller asks for it."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import sparse_rational

from .errors import UserError


def check_reachable(address: str, timeout: float = 5.0, option: str = "--ray-address") -> None:
    """One-line error for an address nobody answers at (before ray.init's long retries)."""
    if address in ("auto", "local"):
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise UserError(f"{option} {address}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise UserError(f"{option} {address}: cannot connect ({exc.strerror or exc})") from None


def runtime_env(install: bool = False) -> dict:
    """Ray's runtime environment that carries this package to a cluster's workers (as a
    ``py_modules`` entry: the code, not an installed copy) and, with ``install``, its
    dependencies (``pip``: the base requirements, torch pinned to the driver's version)."""
    env: dict[str, Any] = {"py_modules": [str(Path(sparse_rational.__file__).resolve().parent)]}
    if install:
        from importlib.metadata import PackageNotFoundError, requires  # lazy: start-up (importlib.metadata)

        import torch  # lazy: start-up (torch); the workers get the driver's torch version

        try:
            reqs = [r for r in requires("sparse-rational") or [] if "extra ==" not in r]
        except PackageNotFoundError:
            reqs = []
        env["pip"] = [f"torch=={torch.__version__.split('+')[0]}"] + [r for r in reqs if not r.startswith("torch")]
    return env


def import_ray(what: str) -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray  # lazy: optional (ray)
    except ImportError:
        raise UserError(f"{what} needs Ray: pip install 'sparse-rational[ray]'") from None
    return ray


def connect(
    address: str | None,
    workers: int | None,
    env_vars: dict[str, str] | None = None,
    install: bool = False,
    what: str = "--ray-address",
) -> bool:
    """Join the cluster at ``address`` (this package goes to its workers through the runtime
    environment) or, without one, start a local Ray instance of ``workers`` CPUs (default:
    all). Nothing happens when Ray is already initialised. Returns whether this call started
    (and so should shut down) Ray."""
    ray = import_ray(what)
    if ray.is_initialized():
        return False
    env = dict(env_vars or {})
    if os.environ.get("SPARSE_RATIONAL_DATA"):
        env.setdefault("SPARSE_RATIONAL_DATA", os.environ["SPARSE_RATIONAL_DATA"])
    renv: dict[str, Any] = {"env_vars": env}
    if address:
        renv.update(runtime_env(install))
    kwargs: dict[str, Any] = dict(
        include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, runtime_env=renv
    )
    if address:
        check_reachable(address, option=what)
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:  # ConnectionError, RuntimeError, ValueError, ...
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"{what} {address}: cannot connect to Ray ({msg})") from None
    else:
        ray.init(num_cpus=workers or os.cpu_count() or 1, **kwargs)
    return True
