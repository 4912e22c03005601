"""Per-epoch training checkpoints: one safetensors file, written atomically, no pickle.

A run that writes its model to ``--out runs/x`` keeps its checkpoint in the hidden sibling
folder ``runs/.x.checkpoint/`` (never inside the model folder), as one file
``checkpoint.safetensors``:

* tensors: ``model.<name>`` (the parameters; the frozen embeddings are rebuilt from the
  data), ``best.<name>`` (the weights of the best dev epoch so far), ``optim.<i>.<key>``
  (Adam's moments and step counts) and ``rng.torch`` (the torch CPU generator);
* metadata ``format`` and ``state``, a JSON object: the phase (``train``, ``penalised``,
  ``search:<k>``, ``finetune``, ...) and the epoch it completed, the run's fingerprint (a
  hash of the command and the data: ``--resume`` refuses a checkpoint of another command),
  Adam's hyperparameters, the LR schedule, the early-stopping counters and history, the
  numpy generator that orders the batches, and what the phase runner keeps of the phases
  already finished (their results; ``kept.<phase>/<name>`` tensors hold the weights later
  phases start from). What the phases are is :mod:`sparse_rational.phases`' business.

It is written to a temporary file in the same folder, flushed, fsynced and renamed over
the previous one (then the folder is fsynced): a process killed at any moment leaves the
previous or the new checkpoint, never a broken one. Reading it validates everything and
turns any problem into a one-line :class:`~sparse_rational.errors.UserError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from .errors import ParameterError, UserError, raise_if_terminated
from .errors import one_line as _one_line
from .fileio import atomic_write_bytes
from .log import NOTICE, get_logger

_log = get_logger(__name__)

FORMAT = "sparse-rational-checkpoint/1"
FILE = "checkpoint.safetensors"
_PHASE = re.compile(r"^[a-z]+(:[a-z0-9.]+)?$")  # "train", "search:3", "finetune:t80"


def checkpoint_dir(out: str | os.PathLike) -> Path:
    """The work area of a run writing ``out``: ``<parent>/.<name>.checkpoint``."""
    out = Path(out)
    name = out.resolve().name if out.name in ("", ".", "..") else out.name
    return out.parent / f".{name}.checkpoint"


def fingerprint(obj) -> str:
    """A stable hash of a JSON-able object (dict keys sorted)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def source_fingerprint(source: str, blocks: int = 64, block_size: int = 1 << 16) -> dict:
    """What identifies the contents behind an embeddings name cheaply: for a file, its size
    and a hash of its first and last blocks and ``blocks`` blocks spread evenly between
    (so a changed or shuffled file is noticed without reading gigabytes); for a folder
    (``hf:FOLDER``), the same for each file in it; otherwise (a packaged name, a hub id)
    the name alone."""
    path = Path(source[3:] if source.startswith("hf:") else source).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))[:1000]
    else:
        return {"name": source}
    out = {}
    for f in files:
        h = hashlib.sha256()
        size = f.stat().st_size
        with open(f, "rb") as fh:
            if size <= (blocks + 2) * block_size:
                h.update(fh.read())
            else:
                for k in range(blocks + 2):
                    fh.seek(min(k * (size - block_size) // (blocks + 1), size - block_size))
                    h.update(fh.read(block_size))
        out[str(f.relative_to(path)) if f != path else f.name] = [size, h.hexdigest()]
    return {"name": source, "files": out}


def examples_digest(*parts: Iterable) -> str:
    """A hash of labelled examples (``.text``, ``.label``), split by split."""
    h = hashlib.sha256()
    for part in parts:
        h.update(b"\x00split\x00")
        for ex in part:
            for s in (ex.label, ex.text):
                data = str(s).encode("utf-8", "surrogatepass")
                h.update(len(data).to_bytes(8, "little"))
                h.update(data)
    return h.hexdigest()


@dataclass
class Checkpoint:
    """A checkpoint as read back: the phase, the epoch it completed, tensors and JSON state."""

    phase: str
    epoch: int
    tensors: dict[str, torch.Tensor]
    state: dict
    path: Path

    def bad(self, what: str) -> UserError:
        return UserError(f"{self.path}: {_one_line(what)}")

    def prefixed(self, prefix: str) -> dict[str, torch.Tensor]:
        n = len(prefix)
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix)}


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``tensors`` (sorted by name):
    stored in the checkpoint, so that a corrupted file is refused, not resumed from."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _valid_phase(phase) -> bool:
    return isinstance(phase, str) and len(phase) <= 64 and bool(_PHASE.match(phase))


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint file (safetensors + JSON only, never pickle)."""
    path = Path(path)

    def bad(what: str) -> UserError:
        return UserError(f"{path}: {_one_line(what)}")

    try:
        data = path.read_bytes()
        tensors = load_tensors(data)  # validates the header, offsets and dtypes
        size = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + size]).get("__metadata__") or {}
    except (SafetensorError, OSError, ValueError, RuntimeError, AttributeError) as exc:
        raise bad(f"not a readable checkpoint ({exc})") from None
    if not isinstance(meta, dict):
        raise bad("not a checkpoint (no metadata)")
    if meta.get("format") != FORMAT:
        raise bad(f"not a {FORMAT} file (format {str(meta.get('format'))[:40]!r})")
    if meta.get("digest") != tensors_digest(tensors):
        raise bad("corrupted: the tensors do not match their checksum")
    try:
        state = json.loads(meta.get("state", ""))
    except (ValueError, RecursionError):
        raise bad("the checkpoint state is not valid JSON") from None
    if not isinstance(state, dict):
        raise bad("the checkpoint state is not a JSON object")
    phase, epoch = state.get("phase"), state.get("epoch")
    if not _valid_phase(phase):
        raise bad(f"unknown phase {str(phase)[:40]!r}")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise bad(f"bad epoch {str(epoch)[:40]!r}")
    if not isinstance(state.get("run"), str) or not isinstance(state.get("finished", {}), dict):
        raise bad("missing run fingerprint or phase results")
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise bad(f"tensor {name} holds NaN or infinite values")
    rng = tensors.get("rng.torch")
    if rng is None or rng.dtype != torch.uint8 or rng.dim() != 1:
        raise bad("missing or malformed random-number-generator state")
    return Checkpoint(cast(str, phase), epoch, tensors, state, path)


class Checkpointer:
    """Writes the checkpoint of one run after every epoch and hands a resumed run its state.

    ``run`` is the fingerprint of the command (options and data). With ``resume``, an
    existing checkpoint is read (a different fingerprint is a one-line error) and becomes
    ``pending``: the phase runner (:mod:`sparse_rational.phases`) replays the run from it.
    Without ``resume``, an existing checkpoint is replaced by this run's first one (said
    on stderr). ``lock_for`` (a description of the output, for the message) holds a lock on
    the work area for the whole run.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        run: str,
        resume: bool = False,
        verbose: bool = True,
        lock_for: str | None = None,
    ):
        self.directory = Path(directory)
        self.path = self.directory / FILE
        self.run = run
        self.verbose = verbose
        self.pending: Checkpoint | None = None
        self.last_saved: tuple[str, int] | None = None
        self._lock_fd: int | None = None
        if lock_for is not None:
            self._lock(lock_for)
        try:
            self._open(resume)
        except BaseException:
            self.release()
            raise

    def _open(self, resume: bool) -> None:
        self._clean_temporaries()
        exists = self.path.is_file()
        if resume and exists:
            ck = read_checkpoint(self.path)
            if ck.state["run"] != self.run:
                raise ParameterError(
                    "resume",
                    "{resume}: " + f"{self.path} is the checkpoint of a different command (other data, options "
                    "or seed); rerun that command with {resume}, or leave out {resume} to start over",
                )
            self.pending = ck
            self.last_saved = (ck.phase, ck.epoch)
            self._note(f"resuming from {self.path} ({ck.phase} epoch {ck.epoch})")
        elif resume:
            self._note(f"no checkpoint in {self.directory} to resume from; starting from the beginning")
        elif exists:
            self._note(
                f"an earlier run's checkpoint in {self.directory} will be replaced "
                "(resume the run to continue it instead)"
            )

    def _lock(self, owner: str) -> None:
        """Create the work area now (an unwritable place fails before any training) and hold
        an advisory lock on it until :meth:`remove` or :meth:`release`: a second run with
        the same output is a one-line error instead of a silent share of one checkpoint."""
        try:
            import fcntl  # lazy: optional (fcntl: POSIX only)
        except ImportError:  # pragma: no cover - not POSIX: no lock
            self.directory.mkdir(parents=True, exist_ok=True)
            return
        for _ in range(10):  # the folder may be removed by a finishing run between open and lock
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise UserError(
                    f"{owner}: another training run is writing it (its work area {self.directory} "
                    "is locked); wait for that run to finish or choose another output"
                ) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.directory))
            except FileNotFoundError:
                same = False
            if same:
                self._lock_fd = fd
                return
            os.close(fd)
        raise UserError(f"{owner}: its work area {self.directory} keeps disappearing; is another run using it?")

    def release(self) -> None:
        """Give up the lock, keeping the checkpoint (a later --resume continues from it)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _note(self, text: str) -> None:
        if self.verbose:
            _log.log(NOTICE, text)

    def _clean_temporaries(self) -> None:
        if self.directory.is_dir():
            for p in self.directory.glob(f".{FILE}.*.tmp"):
                p.unlink(missing_ok=True)

    def describe_last(self) -> str:
        if self.last_saved is None:
            return "no checkpoint was written"
        phase, epoch = self.last_saved
        return f"the last good checkpoint ({phase} epoch {epoch}) is kept in {self.directory}"

    def save(self, phase: str, epoch: int, tensors: dict[str, torch.Tensor], state: dict) -> None:
        """Atomically replace the checkpoint (temporary file, fsync, rename, fsync folder)."""
        assert _valid_phase(phase), phase
        full = {**state, "phase": phase, "epoch": int(epoch), "run": self.run}
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        meta = {"format": FORMAT, "state": json.dumps(full, allow_nan=True), "digest": tensors_digest(tensors)}
        data = save_tensors(tensors, metadata=meta)
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, data)
        try:
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:  # some file systems cannot fsync a folder: the rename is still atomic
            pass
        self.last_saved = (phase, int(epoch))
        raise_if_terminated()  # a SIGTERM whose exception was lost stops the run here

    def remove(self) -> None:
        """Delete the work area (after the model folder has been saved) and release it."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self.release()


# -- (de)serialising the training state -------------------------------------------------------


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Adam's state as tensors (``optim.<i>.<key>``) and JSON (param groups, scalars)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = val
            else:
                scalars.setdefault(str(idx), {})[key] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(opt: torch.optim.Optimizer, ck: Checkpoint) -> None:
    info = ck.state.get("optimizer")
    if not isinstance(info, dict) or not isinstance(info.get("param_groups"), list):
        raise ck.bad("missing optimizer state")
    state: dict[int, dict] = {}
    for name, t in ck.prefixed("optim.").items():
        idx, _, key = name.partition(".")
        if not idx.isdigit() or not key:
            raise ck.bad(f"bad optimizer tensor name optim.{name}")
        state.setdefault(int(idx), {})[key] = t
    for idx, extra in (info.get("scalars") or {}).items():
        if not str(idx).isdigit() or not isinstance(extra, dict):
            raise ck.bad("bad optimizer scalars")
        state.setdefault(int(idx), {}).update(extra)
    groups = info["param_groups"]
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    shapes = [p.shape for g in opt.param_groups for p in g["params"]]
    try:
        if len(groups) != len(opt.param_groups) or sum(len(g["params"]) for g in groups) != n_params:
            raise ValueError("another number of parameters")
        for pidx, st in state.items():
            if pidx >= n_params:
                raise ValueError(f"state for parameter {pidx} of {n_params}")
            for key in ("exp_avg", "exp_avg_sq"):
                if key in st and tuple(st[key].shape) != tuple(shapes[pidx]):
                    raise ValueError(f"{key} of parameter {pidx} has shape {tuple(st[key].shape)}")
        for g in groups:
            if "betas" in g:
                g["betas"] = tuple(g["betas"])
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ck.bad(f"optimizer state does not fit the model ({exc})") from None


def numpy_rng_state(rng: np.random.Generator) -> dict:
    return cast(dict, rng.bit_generator.state)


def restore_numpy_rng(rng: np.random.Generator, ck: Checkpoint) -> None:
    try:
        state = ck.state["numpy_rng"]
        if not isinstance(state, dict) or state.get("bit_generator") != type(rng.bit_generator).__name__:
            raise ValueError("another bit generator")
        rng.bit_generator.state = state
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ck.bad(f"bad numpy generator state ({exc})") from None


def restore_torch_rng(ck: Checkpoint, device: torch.device | None = None) -> None:
    """Restore the CPU generator, and on a CUDA ``device`` the CUDA generator when the
    checkpoint was taken on one (dropout draws there); resuming on another kind of device
    continues with a fresh CUDA generator (the same training, other dropout masks)."""
    try:
        torch.set_rng_state(ck.tensors["rng.torch"])
        if device is not None and device.type == "cuda" and "rng.cuda" in ck.tensors:
            torch.cuda.set_rng_state(ck.tensors["rng.cuda"], device)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise ck.bad(f"bad torch generator state ({exc})") from None


def module_tensors(state_dict: dict[str, torch.Tensor], prefix: str, skip: Iterable[str] = ("embeddings",)) -> dict:
    """``prefix + name -> tensor`` for a state dict, leaving out the frozen ``skip`` buffers."""
    skip = set(skip)
    return {prefix + k: v for k, v in state_dict.items() if k not in skip}


def model_tensors(model: torch.nn.Module, prefix: str = "", state_dict: dict | None = None) -> dict:
    """:func:`module_tensors` of ``model`` (or of ``state_dict``, one of its states): the frozen
    word-vector buffer is left out, tuned rows (a parameter, ``--vectors tuned``) are weights
    and are kept."""
    skip = () if getattr(model, "tuned_rows", False) else ("embeddings",)
    return module_tensors(model.state_dict() if state_dict is None else state_dict, prefix, skip)


def snapshot_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``model``'s weights (:func:`model_tensors`: frozen word vectors left
    out, tuned rows kept), to load back with :func:`load_weights`."""
    return {k: v.detach().clone() for k, v in model_tensors(model).items()}


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], what: str) -> None:
    """Load ``weights`` (a :func:`snapshot_weights` of a model of the same structure) into
    ``model``; its own values stay for what the snapshot left out (frozen word vectors).
    ``what`` names the snapshot in the error of a mismatch."""
    out = dict(model.state_dict())
    for k, t in weights.items():
        if k not in out or tuple(out[k].shape) != tuple(t.shape):
            raise ValueError(f"the weights of {what} do not fit the model ({k})")
        out[k] = t.to(out[k].dtype)
    model.load_state_dict(out)


def restore_module_state(model: torch.nn.Module, ck: Checkpoint, prefix: str, base: dict | None = None) -> dict:
    """The state dict ``base`` (default: the model's) with the tensors ``prefix.*`` of ``ck``;
    every tensor must exist with the same shape (frozen buffers left out of the checkpoint
    keep the model's values)."""
    got = ck.prefixed(prefix)
    current = model.state_dict() if base is None else base
    out = dict(current)
    for name, t in got.items():
        if name not in current:
            raise ck.bad(f"tensor {prefix}{name} does not belong to the model")
        if tuple(t.shape) != tuple(current[name].shape) or not t.is_floating_point():
            raise ck.bad(
                f"tensor {prefix}{name} has shape {tuple(t.shape)} and dtype {t.dtype}, "
                f"the model needs {tuple(current[name].shape)} {current[name].dtype}"
            )
        out[name] = t.to(current[name].dtype)
    missing = [k for k in current if k not in got and k != "embeddings"]
    if missing:
        raise ck.bad(f"tensor {prefix}{missing[0]} is missing")
    return out


def to_jsonable(obj):
    """JSON-able copy: dataclasses as dicts, tuples as lists, non-finite floats kept."""
    if hasattr(obj, "__dataclass_fields__"):
        return to_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj
